"""Hard-negative mining with a dense model: exact search, then drop positives, the top `skip_top` hits (the band
where unlabeled positives concentrate) and any hit scoring above `max_score_ratio` x the query's weakest positive
(a likely false negative). Writes the {query, pos, neg} jsonl that every trainer here reads.
"""

from __future__ import annotations

import os

from jaxretrieval.bundles import LoadedEmbedder
from jaxretrieval.data.train_pairs import read_train_pairs
from jaxretrieval.eval.search import exact_search
from jaxretrieval.inference import encode_texts


def mine_negatives(loaded: LoadedEmbedder, data: str | os.PathLike, top_k: int = 50, skip_top: int = 0,
                   max_score_ratio: float | None = None, num_negatives: int | None = None, split: str = "train",
                   batch_size: int = 64, progress: bool = True) -> list[dict]:
    """One record per distinct query: {"query", "pos": [...], "neg": [...]}, negatives best-scoring first.
    `data` is a BEIR directory (its `split` qrels; the whole corpus is searched) or a {query, pos, neg} jsonl
    (its positive and negative texts form the searched pool)."""
    pairs = read_train_pairs(data, split)
    positives: dict[int, set[int]] = {}
    for q, pos in zip(pairs.query, pairs.positives):
        positives.setdefault(int(q), set()).update(int(p) for p in pos)
    queries = sorted(positives)
    doc_vecs = encode_texts(loaded, pairs.doc_texts, "doc", batch_size, progress, desc="mine: corpus")
    query_vecs = encode_texts(loaded, [pairs.query_texts[q] for q in queries], "query", batch_size, progress,
                              desc="mine: queries")
    depth = min(top_k + skip_top + max(len(p) for p in positives.values()), len(pairs.doc_texts))
    scores, index = exact_search(query_vecs, doc_vecs, depth)
    records = []
    for row, q in enumerate(queries):
        pos = positives[q]
        floor = min(float(query_vecs[row] @ doc_vecs[p]) for p in pos)
        ranked = [(int(j), float(s)) for j, s in zip(index[row], scores[row]) if int(j) not in pos]
        candidates = ranked[skip_top:skip_top + top_k]
        if max_score_ratio is not None:
            candidates = [(j, s) for j, s in candidates if s <= max_score_ratio * floor]
        negatives = [pairs.doc_texts[j] for j, _ in candidates][:num_negatives]
        records.append({"query": pairs.query_texts[q], "pos": [pairs.doc_texts[p] for p in sorted(pos)],
                        "neg": negatives})
    return records

