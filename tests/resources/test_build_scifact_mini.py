"""The bundled sample rebuilds from full SciFact exactly as shipped (same seed, same files), and what is shipped is a
valid BEIR directory with the sizes the quickstart expects."""

import filecmp

from jaxretrieval.data.beir import load_beir
from jaxretrieval.resources.build_scifact_mini import HERE, build


def test_the_shipped_sample_is_a_beir_directory_of_the_stated_size():
    train, test = load_beir(HERE, "train"), load_beir(HERE, "test")
    assert len(train.doc_ids) == 800 and len(test.query_ids) == 100
    assert sum(len(docs) for docs in train.qrels.values()) == 320


def test_rebuilding_from_scifact_reproduces_the_shipped_files(scifact_dir, tmp_path):
    build(scifact_dir, tmp_path)
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/train.tsv", "qrels/test.tsv"):
        assert filecmp.cmp(tmp_path / name, HERE / name, shallow=False), name
