"""Dense retrieval evaluation: encode, exact search, IR metrics; every Matryoshka dim reported with all_dims."""

import numpy as np
import pytest

from hf_tiny import tiny_embedder_dir, tiny_fox_beir
from jaxretrieval.convert.st_format import load_embedder
from jaxretrieval.data.beir import load_beir
from jaxretrieval.eval.metrics import retrieval_metrics
from jaxretrieval.eval.retrieval import evaluate_dense, rankings_from_search
from jaxretrieval.inference import encode_texts
from jaxretrieval.models.embedder import with_heads


def test_metrics_follow_a_brute_force_ranking(tmp_path):
    data = load_beir(tiny_fox_beir(tmp_path / "b"))
    loaded = load_embedder(tiny_embedder_dir(tmp_path / "m"))
    metrics = evaluate_dense(loaded, data, batch_size=4)
    d, q = encode_texts(loaded, data.doc_texts, "doc"), encode_texts(loaded, data.query_texts, "query")
    index = np.argsort(-(q @ d.T), axis=1, kind="stable")
    expect = retrieval_metrics(rankings_from_search(index, data.query_ids, data.doc_ids), data.qrels)
    assert {k: metrics[k] for k in expect} == pytest.approx(expect)
    assert metrics["num_queries"] == 2 and metrics["num_docs"] == 6


def test_all_dims_adds_one_set_of_metrics_per_matryoshka_dim(tmp_path):
    data = load_beir(tiny_fox_beir(tmp_path / "b"))
    loaded = load_embedder(tiny_embedder_dir(tmp_path / "m"))
    loaded.model = with_heads(loaded.model, matryoshka_dims=(8, 4))
    metrics = evaluate_dense(loaded, data, all_dims=True)
    assert {"dim8/ndcg@10", "dim4/mrr@10", "ndcg@10"} <= set(metrics)
    assert evaluate_dense(loaded, data)["ndcg@10"] == metrics["ndcg@10"]
