"""BEIR directories: title + text documents, only judged queries, and one-line errors naming the file."""

import pytest

from hf_tiny import tiny_beir
from jaxretrieval.data.beir import load_beir, read_qrels
from jaxretrieval.errors import InputError


def test_split_keeps_judged_queries_in_file_order(tmp_path):
    root = tiny_beir(tmp_path / "b", [{"_id": "d1", "title": "Fox", "text": "quick"}, {"_id": "d2", "text": "dog"}],
                     [{"_id": "q2", "text": "dog?"}, {"_id": "q1", "text": "fox?"}, {"_id": "q3", "text": "cat?"}],
                     [("q1", "d1", 1), ("q2", "d2", 2), ("q2", "d1", 0)])
    split = load_beir(root, "test")
    assert split.doc_texts == ["Fox quick", "dog"] and split.query_ids == ["q2", "q1"]
    assert split.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2, "d1": 0}}
    assert read_qrels(root / "qrels" / "test.tsv")["q2"]["d2"] == 2


def test_errors_name_the_file(tmp_path):
    root = tiny_beir(tmp_path / "b", [{"_id": "d1", "text": "x"}], [{"_id": "q1", "text": "y"}], [("q9", "d1", 1)])
    with pytest.raises(InputError, match="no qrels for split 'dev' \\(found: test\\)"):
        load_beir(root, "dev")
    with pytest.raises(InputError, match="not in queries.jsonl"):
        load_beir(root, "test")
    (root / "corpus.jsonl").write_text('{"text": "no id"}\n')
    with pytest.raises(InputError, match=r"corpus.jsonl:1 \[_id\]"):
        load_beir(root, "test")
    with pytest.raises(InputError, match="does not exist"):
        load_beir(tmp_path / "none")
