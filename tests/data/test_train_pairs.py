"""Training pairs: jsonl and BEIR readers, validation errors naming file and line, and per-epoch sampling."""

import json

import numpy as np
import pytest

from jaxretrieval.data.train_pairs import epoch_plan, read_pairs_beir, read_pairs_jsonl
from jaxretrieval.errors import InputError


def test_jsonl_reader_dedups_texts_and_applies_prompt(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"query": "q1", "pos": ["a"], "neg": ["b", "c"], "prompt": "Q: "}) + "\n" +
                 json.dumps({"query": "q2", "pos": "b"}) + "\n")
    pairs = read_pairs_jsonl(f)
    assert pairs.query_texts == ["Q: q1", "q2"]
    assert pairs.doc_texts == ["a", "b", "c"]
    assert pairs.positives[1].tolist() == [1] and pairs.negatives[0].tolist() == [1, 2]


@pytest.mark.parametrize("line,expect", [
    ('{"query": "q", "pos": ["a"]', ":2: not valid JSON"),
    ('{"query": "q", "pos": []}', ":2 [pos]: field 'pos' is empty"),
    ('{"pos": ["a"]}', ":2 [query]: missing field 'query'"),
    ('{"query": "q", "pos": ["a"], "neg": [1]}', ":2 [neg]: field 'neg' must be a list of strings"),
])
def test_jsonl_errors_name_file_and_line(tmp_path, line, expect):
    f = tmp_path / "d.jsonl"
    f.write_text('{"query": "ok", "pos": ["a"]}\n' + line + "\n")
    with pytest.raises(InputError) as e:
        read_pairs_jsonl(f)
    assert str(f) + expect in str(e.value)


def test_beir_pairs_one_per_relevant_row(scifact_dir):
    pairs = read_pairs_beir(scifact_dir, "train")
    assert len(pairs) == 919  # every qrels row of SciFact train has score 1
    assert len(pairs.query_texts) == len(set(pairs.query_texts)) == 807  # 809 ids, two texts repeat


def test_epoch_plan_is_deterministic_and_resamples(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text("".join(json.dumps({"query": f"q{i}", "pos": [f"p{i}"], "neg": [f"n{i}-{j}" for j in range(3)]})
                         + "\n" for i in range(20)))
    pairs = read_pairs_jsonl(f)
    a = epoch_plan(pairs, seed=1, epoch=0, num_negatives=2)
    b = epoch_plan(pairs, seed=1, epoch=0, num_negatives=2)
    c = epoch_plan(pairs, seed=1, epoch=1, num_negatives=2)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    # negatives: from the example's own hard negatives, without replacement when it has enough
    q, _, neg = epoch_plan(pairs, seed=2, epoch=0, num_negatives=3)
    for row, qid in enumerate(q):
        i = int(np.nonzero(pairs.query == qid)[0][0])
        assert set(neg[row]) <= set(pairs.negatives[i]) and len(set(neg[row])) == len(set(pairs.negatives[i]))
    # more negatives than an example has: with replacement
    _, _, neg = epoch_plan(pairs, seed=2, epoch=0, num_negatives=5)
    assert neg.shape == (20, 5)


def test_random_negatives_avoid_positives_when_none_given(scifact_dir):
    pairs = read_pairs_beir(scifact_dir, "train")
    _, pos, neg = epoch_plan(pairs, seed=0, epoch=0, num_negatives=4)
    assert neg.shape == (919, 4) and not (neg == pos[:, None]).any()


def test_an_sts_file_gives_its_high_scoring_pairs_with_the_source_prompt(tmp_path):
    from jaxretrieval.data.train_pairs import read_train_pairs

    path = tmp_path / "sts-train.csv"
    path.write_text("g\tf\t2012\t1\t4.5\ta man\ta person\n" "g\tf\t2012\t2\t1.0\ta cat\ta car\n"
                    "g\tf\t2012\t3\t4.0\ta dog\ta puppy\n")
    pairs = read_train_pairs(path, min_score=4, prompt="q: ")
    assert pairs.query_texts == ["q: a man", "q: a dog"]
    assert [pairs.doc_texts[int(p[0])] for p in pairs.positives] == ["a person", "a puppy"]
    with pytest.raises(InputError, match=r"needs min_score"):
        read_train_pairs(path)
    with pytest.raises(InputError, match=r"no pair scores at least min_score 5"):
        read_train_pairs(path, min_score=5)


def test_a_source_prompt_goes_before_queries_without_their_own(tmp_path):
    from jaxretrieval.data.train_pairs import read_train_pairs

    path = tmp_path / "p.jsonl"
    path.write_text('{"query": "a", "pos": ["x"]}\n{"query": "b", "pos": ["y"], "prompt": "own: "}\n')
    assert read_train_pairs(path, prompt="src: ").query_texts == ["src: a", "own: b"]
    with pytest.raises(InputError, match=r"min_score is for STS files"):
        read_train_pairs(path, min_score=3)
