"""Reranker training data in the three RAG-Retrieval formats, all read into TrainPairs (with labels as scores):

- pointwise `{"query", "content", "label"}`: rows of the same query form its group;
- grouped `{"query", "hits": [{"content", "label"}, ...]}`;
- `{"query", "pos": [...], "neg": [...], "pos_scores"?, "neg_scores"?}` (teacher scores kept for distillation).

Graded labels are rescaled to [0, 1] from [label_min, label_max]; in a labeled group the candidates with the
group's highest label (above label_min) are its positives, the rest its negatives.
"""

from __future__ import annotations

import os

import numpy as np

from jaxretrieval.data.jsonl import iter_jsonl, require_str
from jaxretrieval.data.train_pairs import TextInterner, TrainPairs, read_pairs_jsonl, read_train_pairs
from jaxretrieval.errors import InputError
from jaxretrieval.files import upath


def _label(obj: dict, path, lineno: int, low: float, high: float) -> float:
    value = obj.get("label")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise InputError("field 'label' must be a number", path, lineno, field="label")
    if not low <= value <= high:
        raise InputError(f"label {value} is outside [label_min, label_max] = [{low}, {high}]", path, lineno,
                         field="label")
    return (float(value) - low) / (high - low)


def is_labeled_jsonl(path: str | os.PathLike) -> bool:
    """A pointwise or grouped labeled file rather than {query, pos, neg} records, judged by its first record."""
    return "pos" not in next(iter_jsonl(path), (None, {}))[1]


def read_rerank_data(source: str | os.PathLike, label_min: float = 0.0, label_max: float = 1.0,
                     split: str = "train") -> TrainPairs:
    p = upath(source)
    if p.is_dir() or p.suffix != ".jsonl":
        return read_train_pairs(p, split)
    if not is_labeled_jsonl(p):
        return read_pairs_jsonl(p)
    if label_max <= label_min:
        raise InputError("label_max must exceed label_min", "config", field="reranker.label_max")
    groups: dict[str, list[tuple[str, float, int]]] = {}
    for lineno, obj in iter_jsonl(p):
        query = require_str(obj, "query", p, lineno, allow_empty=False)
        if "hits" in obj:
            hits = obj["hits"]
            if not isinstance(hits, list) or not hits:
                raise InputError("field 'hits' must be a non-empty list", p, lineno, field="hits")
            for hit in hits:
                if not isinstance(hit, dict):
                    raise InputError("each hit must be an object {content, label}", p, lineno, field="hits")
                groups.setdefault(query, []).append((require_str(hit, "content", p, lineno),
                                                     _label(hit, p, lineno, label_min, label_max), lineno))
        else:
            groups.setdefault(query, []).append((require_str(obj, "content", p, lineno),
                                                 _label(obj, p, lineno, label_min, label_max), lineno))
    queries, docs = TextInterner(), TextInterner()
    q_ids, pos, neg, pos_s, neg_s = [], [], [], [], []
    for query, hits in groups.items():
        best = max(label for _, label, _ in hits)
        if best <= 0.0:
            raise InputError(f"query {query[:60]!r} has no candidate labeled above label_min", p, hits[0][2],
                             field="label")
        q_ids.append(queries(query))
        top = [(docs(c), label) for c, label, _ in hits if label == best]
        rest = [(docs(c), label) for c, label, _ in hits if label != best]
        pos.append(np.array([d for d, _ in top], np.int64))
        pos_s.append(np.array([s for _, s in top], np.float32))
        neg.append(np.array([d for d, _ in rest], np.int64))
        neg_s.append(np.array([s for _, s in rest], np.float32))
    return TrainPairs(queries.texts, docs.texts, np.array(q_ids, np.int64), pos, neg, str(p), pos_s, neg_s)
