"""Cross-encoder directories in and out: a written reranker reads back with the same head and scores."""

import numpy as np

from hf_tiny import tiny_bert
from jaxretrieval.convert.cross_encoder_format import is_cross_encoder_dir, load_reranker
from jaxretrieval.convert.export import export
from jaxretrieval.convert.formats import read_json
from jaxretrieval.eval.rerank import score_pairs


def test_written_reranker_reads_back_with_its_head(tmp_path):
    loaded = load_reranker(tiny_bert(tmp_path / "hf"), max_length=24, seed=5)
    assert not is_cross_encoder_dir(tmp_path / "hf")  # a bare BertModel: an encoder, not a reranker
    out = export(loaded, tmp_path / "ce", fmt="cross-encoder")
    assert is_cross_encoder_dir(out)
    config = read_json(out / "config.json")
    assert config["architectures"] == ["BertForSequenceClassification"] and config["num_labels"] == 1
    again = load_reranker(out, max_length=24)
    queries, docs = ["quick fox", "lazy"], ["the quick brown fox", "hello world dog"]
    np.testing.assert_allclose(score_pairs(again, queries, docs), score_pairs(loaded, queries, docs), atol=1e-5)
