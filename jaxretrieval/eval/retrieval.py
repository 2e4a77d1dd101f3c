"""Dense retrieval evaluation on a BEIR split: encode corpus and queries, exact search, IR metrics.

Shared by `jaxretrieval eval` and by evaluation during training, so both report the same numbers.
"""

from __future__ import annotations

import logging

import numpy as np

from jaxretrieval.bundles import LoadedEmbedder
from jaxretrieval.data.beir import BeirSplit
from jaxretrieval.eval.metrics import retrieval_metrics
from jaxretrieval.eval.search import exact_search
from jaxretrieval.inference import encode_texts

log = logging.getLogger(__name__)


def rankings_from_search(index: np.ndarray, query_ids: list[str], doc_ids: list[str]) -> dict[str, list[str]]:
    return {qid: [doc_ids[j] for j in row] for qid, row in zip(query_ids, index)}


def evaluate_dense(loaded: LoadedEmbedder, data: BeirSplit, batch_size: int = 32, top_k: int = 100,
                   progress: bool = False, doc_embeddings: np.ndarray | None = None, all_dims: bool = False) -> dict:
    """Metrics dict with ndcg@10, recall@100, mrr@10, num_queries, num_docs. With all_dims, every Matryoshka
    output is searched too (one encoding pass) and reported as `dim<D>/<metric>`."""
    if doc_embeddings is None:
        doc_embeddings = encode_texts(loaded, data.doc_texts, "doc", batch_size, progress, desc="corpus",
                                      all_dims=all_dims)
    query_embeddings = encode_texts(loaded, data.query_texts, "query", batch_size, progress, desc="queries",
                                    all_dims=all_dims)
    main = loaded.model.dim
    docs = doc_embeddings if all_dims else {main: doc_embeddings}
    queries = query_embeddings if all_dims else {main: query_embeddings}
    metrics: dict = {}
    for dim in docs:
        _, index = exact_search(queries[dim], docs[dim], top_k)
        found = retrieval_metrics(rankings_from_search(index, data.query_ids, data.doc_ids), data.qrels)
        metrics.update(found if dim == main else {f"dim{dim}/{k}": v for k, v in found.items()})
    metrics.update(num_queries=len(data.query_ids), num_docs=len(data.doc_ids))
    return metrics
