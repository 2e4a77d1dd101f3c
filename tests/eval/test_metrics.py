"""IR metrics against hand-computed values and an independent NumPy formulation."""

import math

import numpy as np
import pytest

from jaxretrieval.eval.metrics import mrr_at_k, ndcg_at_k, recall_at_k, retrieval_metrics


def test_metrics_hand_computed():
    judged = {"a": 1, "b": 2, "z": 1}  # z is never retrieved
    ranking = ["x", "b", "y", "a"]
    dcg = 2 / math.log2(3) + 1 / math.log2(5)
    idcg = 2 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(ranking, judged, 10) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(ranking, judged, 1) == 0.0
    assert recall_at_k(ranking, judged, 100) == pytest.approx(2 / 3)
    assert recall_at_k(ranking, judged, 2) == pytest.approx(1 / 3)
    assert mrr_at_k(ranking, judged, 10) == pytest.approx(0.5)
    assert mrr_at_k(ranking, judged, 1) == 0.0
    assert ndcg_at_k(ranking, {"a": 0}, 10) == 0.0  # no relevant document: 0, not NaN


def _numpy_reference(scores, rel, k):
    """Vectorized metrics over a dense relevance matrix rel[q, doc] (independent of the list-based code)."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    gains = np.take_along_axis(rel, order, axis=1).astype(float)
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (gains * disc[: gains.shape[1]]).sum(1)
    ideal = -np.sort(-rel, axis=1)[:, :k]
    idcg = (ideal * disc[: ideal.shape[1]]).sum(1)
    ndcg = np.where(idcg > 0, dcg / np.where(idcg > 0, idcg, 1), 0)
    hits = gains > 0
    recall = hits.sum(1) / np.maximum((rel > 0).sum(1), 1)
    first = np.where(hits.any(1), hits.argmax(1) + 1, np.inf)
    return ndcg.mean(), recall.mean(), (1 / first).mean()


def test_metrics_match_numpy_reference():
    rng = np.random.default_rng(0)
    q, n = 40, 300
    scores = rng.normal(size=(q, n))
    rel = (rng.random((q, n)) < 0.02) * rng.integers(1, 3, size=(q, n))
    rel[:, 0] = np.maximum(rel[:, 0], 1)  # every query has a relevant doc
    doc_ids = [f"d{j}" for j in range(n)]
    order = np.argsort(-scores, axis=1, kind="stable")
    rankings = {f"q{i}": [doc_ids[j] for j in order[i]] for i in range(q)}
    qrels = {f"q{i}": {doc_ids[j]: int(rel[i, j]) for j in np.nonzero(rel[i])[0]} for i in range(q)}
    ours = retrieval_metrics(rankings, qrels)
    ndcg10, _, _ = _numpy_reference(scores, rel, 10)
    _, recall100, _ = _numpy_reference(scores, rel, 100)
    _, _, mrr10 = _numpy_reference(scores, rel, 10)
    assert ours["ndcg@10"] == pytest.approx(ndcg10)
    assert ours["recall@100"] == pytest.approx(recall100)
    assert ours["mrr@10"] == pytest.approx(mrr10)
