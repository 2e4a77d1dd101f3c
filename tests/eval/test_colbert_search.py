"""ColBERT search: exact MaxSim over the whole corpus in fixed-shape chunks equals brute force; rerank mode reorders
a given run by MaxSim."""

import numpy as np
import pytest

from hf_tiny import tiny_bert, tiny_fox_beir
from jaxretrieval.config import ColBERTConfig
from jaxretrieval.convert.pylate_format import load_colbert
from jaxretrieval.data.beir import load_beir
from jaxretrieval.eval.colbert_search import encode_token_vectors, evaluate_colbert, maxsim_search, rerank_colbert
from jaxretrieval.losses.maxsim import maxsim_dense

DOCS = ["the quick brown fox", "lazy dog , hello", "world . world", "over the fox jumps", "hello"]


@pytest.fixture(scope="module")
def colbert(tmp_path_factory):
    root = tmp_path_factory.mktemp("colbert")
    return load_colbert(tiny_bert(root / "hf"), ColBERTConfig(dim=8, query_length=6, doc_length=16,
                                                              query_prefix="", doc_prefix=""))


def _brute(q, d, qi, j):
    qv = q[0][q[1][qi]:q[1][qi + 1]].astype(np.float32)
    dv = d[0][d[1][j]:d[1][j + 1]].astype(np.float32)
    return float(maxsim_dense(qv[None], np.ones((1, len(qv))), dv[None], np.ones((1, len(dv))))[0, 0])


def test_chunked_search_equals_brute_force(colbert):
    d = encode_token_vectors(colbert, DOCS, "doc")
    q = encode_token_vectors(colbert, ["fox", "hello world"], "query")
    assert d[0].dtype == np.float16 and len(d[1]) == len(DOCS) + 1
    scores, index = maxsim_search(q, d, top_k=3, doc_chunk=2, query_chunk=1)
    for qi in range(2):
        brute = [_brute(q, d, qi, j) for j in range(len(DOCS))]
        np.testing.assert_allclose(scores[qi], np.sort(brute)[::-1][:3], rtol=1e-3, atol=1e-3)
        assert index[qi, 0] == int(np.argmax(brute))


def test_rerank_orders_a_run_by_maxsim(colbert, tmp_path):
    data = load_beir(tiny_fox_beir(tmp_path / "b"))
    metrics = evaluate_colbert(colbert, data, top_k=6)
    assert metrics["num_docs"] == 6 and 0 <= metrics["ndcg@10"] <= 1
    run = {"q0": ["d5", "d4", "d0"], "q1": ["d1", "d2"]}
    reordered = rerank_colbert(colbert, data, run, top_k=3)
    assert sorted(reordered["q0"]) == sorted(run["q0"]) and sorted(reordered["q1"]) == sorted(run["q1"])
