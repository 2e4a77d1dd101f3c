"""Two-stage evaluation: a dense first stage's top-k per query, rescored by a cross-encoder; nDCG@10 etc. before
and after. Also the scorer behind `jaxretrieval score` (teacher scores for distillation)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm import tqdm

from jaxretrieval.bundles import LoadedReranker
from jaxretrieval.data.beir import BeirSplit
from jaxretrieval.data.tokenize import bucket_for, inference_length_buckets
from jaxretrieval.eval.metrics import retrieval_metrics
from jaxretrieval.eval.retrieval import rankings_from_search
from jaxretrieval.eval.search import exact_search
from jaxretrieval.inference import encode_texts


@functools.partial(jax.jit, static_argnums=0)
def _scores(graphdef, state, ids, mask, types):
    return nnx.merge(graphdef, state)(ids, mask, types)


def score_pairs(loaded: LoadedReranker, queries: list[str], docs: list[str], batch_size: int = 32,
                progress: bool = False) -> np.ndarray:
    """Relevance logits float32[N] of (queries[i], docs[i]); pairs sorted by length and padded to buckets."""
    graphdef, state = nnx.split(loaded.model)
    tok = loaded.tokenizer
    encoded = tok.encode(queries, docs)
    lengths = [len(x) for x in encoded["input_ids"]]
    order = np.argsort(lengths, kind="stable")
    buckets = inference_length_buckets(tok.max_length)
    out = np.zeros(len(queries), np.float32)
    for start in tqdm(range(0, len(order), batch_size), desc="rerank", disable=not progress):
        rows = order[start:start + batch_size]
        length = bucket_for(max(lengths[i] for i in rows), buckets)
        enc = tok.pad({k: [v[i] for i in rows] for k, v in encoded.items()}, length, rows=batch_size)
        s = _scores(graphdef, state, jnp.asarray(enc["ids"]), jnp.asarray(enc["mask"]), jnp.asarray(enc["types"]))
        out[rows] = np.asarray(s)[:len(rows)]
    return out


def dense_first_stage(first_stage, data: BeirSplit, top_k: int, batch_size: int = 64) -> dict[str, list[str]]:
    docs = encode_texts(first_stage, data.doc_texts, "doc", batch_size, progress=True, desc="first stage corpus")
    queries = encode_texts(first_stage, data.query_texts, "query", batch_size, progress=True, desc="first stage")
    _, index = exact_search(queries, docs, top_k)
    return rankings_from_search(index, data.query_ids, data.doc_ids)


def rerank_run(loaded: LoadedReranker, data: BeirSplit, run: dict[str, list[str]], top_k: int,
               batch_size: int = 32) -> dict[str, list[str]]:
    doc_text = dict(zip(data.doc_ids, data.doc_texts))
    query_text = dict(zip(data.query_ids, data.query_texts))
    qs, ds, owners = [], [], []
    for qid in data.query_ids:
        for doc in run.get(qid, [])[:top_k]:
            qs.append(query_text[qid])
            ds.append(doc_text[doc])
            owners.append((qid, doc))
    scores = score_pairs(loaded, qs, ds, batch_size, progress=True)
    by_query: dict[str, list[tuple[float, str]]] = {}
    for (qid, doc), s in zip(owners, scores):
        by_query.setdefault(qid, []).append((float(s), doc))
    return {qid: [d for _, d in sorted(items, key=lambda x: -x[0])] for qid, items in by_query.items()}


def evaluate_reranker(loaded: LoadedReranker, data: BeirSplit, run: dict[str, list[str]], top_k: int = 100,
                      batch_size: int = 32) -> dict:
    """Metrics after reranking, plus `first_stage/<metric>` before."""
    before = retrieval_metrics(run, data.qrels)
    after = retrieval_metrics(rerank_run(loaded, data, run, top_k, batch_size), data.qrels)
    return {**after, **{f"first_stage/{k}": v for k, v in before.items()}, "rerank_top": top_k,
            "num_queries": len(data.query_ids)}
