"""Teacher scores for distillation: one per positive and negative, from a dense model's dot products here (the
reranker and ColBERT paths are exercised end to end in tests/scenarios)."""

import numpy as np

from hf_tiny import tiny_embedder_dir
from jaxretrieval.convert.st_format import load_embedder
from jaxretrieval.eval.scoring import score_records
from jaxretrieval.inference import encode_texts


def test_dense_scores_are_dot_products_in_record_order(tmp_path):
    loaded = load_embedder(tiny_embedder_dir(tmp_path / "m"))
    records = [{"query": "fox", "pos": "quick fox", "neg": ["dog", "hello"]}, {"query": "dog", "pos": ["lazy dog"]}]
    scored = score_records(loaded, records)
    assert [len(r["pos_scores"]) for r in scored] == [1, 1] and [len(r["neg_scores"]) for r in scored] == [2, 0]
    q = encode_texts(loaded, ["fox"], "query")[0]
    expect = encode_texts(loaded, ["quick fox", "dog", "hello"], "doc") @ q
    np.testing.assert_allclose(scored[0]["pos_scores"] + scored[0]["neg_scores"], expect, atol=1e-5)
    assert scored[1]["query"] == "dog"  # the record's own fields are kept
