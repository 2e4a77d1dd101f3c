"""nDCG@k, Recall@k and MRR@k with the conventions of trec_eval / pytrec_eval (as BEIR and MTEB report them):
linear gain = graded relevance, log2(rank + 1) discount, ideal ranking from the judged documents, and only
relevance > 0 counting as relevant for recall and MRR. Scores are averaged over the judged queries.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence


def ndcg_at_k(ranking: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    dcg = sum(judged.get(doc, 0) / math.log2(rank + 2) for rank, doc in enumerate(ranking[:k]))
    ideal = sorted((r for r in judged.values() if r > 0), reverse=True)[:k]
    idcg = sum(r / math.log2(rank + 2) for rank, r in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranking: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    relevant = {doc for doc, r in judged.items() if r > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranking[:k])) / len(relevant)


def mrr_at_k(ranking: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    for rank, doc in enumerate(ranking[:k]):
        if judged.get(doc, 0) > 0:
            return 1.0 / (rank + 1)
    return 0.0


# the metrics every retrieval evaluation reports: name -> (function, cutoff)
METRICS = {"ndcg@10": (ndcg_at_k, 10), "recall@100": (recall_at_k, 100), "mrr@10": (mrr_at_k, 10)}


def retrieval_metrics(rankings: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]]) -> dict:
    """rankings: query id → doc ids best first; qrels: query id → {doc id: relevance}. Queries without a ranking
    count as 0 (a missing query must not raise the average)."""
    totals = dict.fromkeys(METRICS, 0.0)
    for qid, judged in qrels.items():
        ranking = rankings.get(qid, [])
        for name, (fn, k) in METRICS.items():
            totals[name] += fn(ranking, judged, k)
    n = max(len(qrels), 1)
    return {name: total / n for name, total in totals.items()}
