"""Reranker data in the three RAG-Retrieval formats: pointwise labels grouped by query, grouped hits, and
{query, pos, neg}; labels rescaled to [0, 1]; a label outside its range names the file, line and field."""

import json

import numpy as np
import pytest

from jaxretrieval.data.rerank_data import read_rerank_data
from jaxretrieval.errors import InputError


def test_pointwise_and_grouped_formats(tmp_path):
    point = tmp_path / "point.jsonl"
    point.write_text("".join(json.dumps(r) + "\n" for r in [
        {"query": "q1", "content": "a", "label": 3}, {"query": "q1", "content": "b", "label": 1},
        {"query": "q1", "content": "c", "label": 0}, {"query": "q2", "content": "d", "label": 2}]))
    pairs = read_rerank_data(point, label_min=0, label_max=3)
    assert pairs.query_texts == ["q1", "q2"] and pairs.doc_texts[:3] == ["a", "b", "c"]
    np.testing.assert_allclose(pairs.positive_scores[0], [1.0])
    np.testing.assert_allclose(pairs.negative_scores[0], [1 / 3, 0.0])
    grouped = tmp_path / "grouped.jsonl"
    grouped.write_text(json.dumps({"query": "q", "hits": [{"content": "x", "label": 1}, {"content": "y", "label": 0}]})
                       + "\n")
    g = read_rerank_data(grouped)
    assert g.positives[0].tolist() == [0] and g.negatives[0].tolist() == [1]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"query": "q", "content": "x", "label": 7}) + "\n")
    with pytest.raises(InputError, match=r"bad\.jsonl:1 \[label\]: label 7 is outside"):
        read_rerank_data(bad, 0, 3)
