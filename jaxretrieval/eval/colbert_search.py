"""ColBERT evaluation: token vectors for the corpus (kept as float16, ragged), exact MaxSim over the whole corpus
in fixed-shape chunks (one compile), the same IR metrics as dense retrieval, and a rerank mode that rescores a
given first-stage run.
"""

from __future__ import annotations

import functools
import sys
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm import tqdm

from jaxretrieval.bundles import LoadedColBERT
from jaxretrieval.data.beir import BeirSplit
from jaxretrieval.data.tokenize import bucket_for, inference_length_buckets
from jaxretrieval.eval.metrics import retrieval_metrics
from jaxretrieval.losses.maxsim import maxsim_dense


@functools.partial(jax.jit, static_argnums=0)
def _token_vectors(graphdef, state, ids, attention, vectors):
    return nnx.merge(graphdef, state)(ids, attention, vectors)


def encode_token_vectors(loaded: LoadedColBERT, texts: Sequence[str], kind: str, batch_size: int = 32,
                         progress: bool = False, dtype=np.float16) -> tuple[np.ndarray, np.ndarray]:
    """(dtype[total vectors, dim] (float16: half the index memory), int64 offsets[len(texts) + 1]): text i's
    vectors are rows
    offsets[i]:offsets[i + 1] (documents: real, non-skiplisted tokens; queries: all query_length positions)."""
    tok = loaded.tokenizer
    graphdef, state = nnx.split(loaded.model)
    per_text: list[np.ndarray | None] = [None] * len(texts)
    token_ids = tok.token_ids(list(texts), kind)  # tokenized once: lengths for sorting, then batches
    lengths = [len(x) for x in token_ids]
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    buckets = inference_length_buckets(tok.doc_length if kind == "doc" else tok.query_length)
    bar = tqdm(total=len(texts), desc=f"colbert {kind}s", unit="text", file=sys.stderr, disable=not progress)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        enc = tok.pad_ids([token_ids[i] for i in rows], kind)
        width = enc["ids"].shape[1] if kind == "query" else bucket_for(enc["ids"].shape[1], buckets)
        padded = {k: np.zeros((batch_size, width), np.int32) for k in enc}
        for k, v in enc.items():
            padded[k][:len(rows), :v.shape[1]] = v
        vecs, mask = _token_vectors(graphdef, state, *(jnp.asarray(padded[k]) for k in ("ids", "attention",
                                                                                       "vectors")))
        vecs, mask = np.asarray(vecs, dtype), np.asarray(mask).astype(bool)
        for r, i in enumerate(rows):
            per_text[i] = vecs[r][mask[r]]
        bar.update(len(rows))
    bar.close()
    counts = np.array([len(v) for v in per_text], np.int64)
    flat = np.concatenate(per_text) if per_text else np.zeros((0, loaded.model.dim), dtype)
    return flat, np.concatenate([[0], np.cumsum(counts)])


def _padded(flat: np.ndarray, offsets: np.ndarray, rows: Sequence[int], length: int) -> tuple[np.ndarray, np.ndarray]:
    out = np.zeros((len(rows), length, flat.shape[1]), np.float32)
    mask = np.zeros((len(rows), length), np.int32)
    for r, i in enumerate(rows):
        v = flat[offsets[i]:offsets[i + 1]][:length]
        out[r, :len(v)] = v
        mask[r, :len(v)] = 1
    return out, mask


_maxsim = jax.jit(maxsim_dense, static_argnums=4)


def maxsim_search(queries: tuple[np.ndarray, np.ndarray], docs: tuple[np.ndarray, np.ndarray], top_k: int = 100,
                  reduce: str = "sum", query_chunk: int = 64, doc_chunk: int = 128
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Exact MaxSim of every query against every document: (scores float32[Q, k], doc indices int64[Q, k]),
    best first. Query and document chunks have fixed shapes, so the scoring function compiles once; memory is
    query_chunk x doc_chunk x Lq x Ld floats whatever the corpus size."""
    q_flat, q_off = queries
    d_flat, d_off = docs
    n_q, n_d = len(q_off) - 1, len(d_off) - 1
    q_len = int(np.diff(q_off).max())
    d_len = int(np.diff(d_off).max())
    k = min(top_k, n_d)
    best_s = np.full((n_q, k), -np.inf, np.float32)
    best_i = np.zeros((n_q, k), np.int64)
    for qs in range(0, n_q, query_chunk):
        q_rows = list(range(qs, min(qs + query_chunk, n_q)))
        q, qm = _padded(q_flat, q_off, q_rows + [q_rows[-1]] * (query_chunk - len(q_rows)), q_len)
        for ds in range(0, n_d, doc_chunk):
            d_rows = list(range(ds, min(ds + doc_chunk, n_d)))
            d, dm = _padded(d_flat, d_off, d_rows + [d_rows[-1]] * (doc_chunk - len(d_rows)), d_len)
            scores = np.asarray(_maxsim(q, qm, d, dm, reduce))[:len(q_rows), :len(d_rows)]
            merged_s = np.concatenate([best_s[qs:qs + len(q_rows)], scores], axis=1)
            merged_i = np.concatenate([best_i[qs:qs + len(q_rows)], np.broadcast_to(np.array(d_rows),
                                                                                   scores.shape)], axis=1)
            top = np.argsort(-merged_s, axis=1, kind="stable")[:, :k]
            best_s[qs:qs + len(q_rows)] = np.take_along_axis(merged_s, top, 1)
            best_i[qs:qs + len(q_rows)] = np.take_along_axis(merged_i, top, 1)
    return best_s, best_i


def evaluate_colbert(loaded: LoadedColBERT, data: BeirSplit, batch_size: int = 32, top_k: int = 100,
                     progress: bool = False) -> dict:
    docs = encode_token_vectors(loaded, data.doc_texts, "doc", batch_size, progress)
    queries = encode_token_vectors(loaded, data.query_texts, "query", batch_size, progress)
    _, index = maxsim_search(queries, docs, top_k, loaded.model.spec.reduce)
    rankings = {qid: [data.doc_ids[j] for j in row] for qid, row in zip(data.query_ids, index)}
    metrics = retrieval_metrics(rankings, data.qrels)
    metrics.update(num_queries=len(data.query_ids), num_docs=len(data.doc_ids),
                   index_mib=round(docs[0].nbytes / 2**20, 1))
    return metrics


def rerank_colbert(loaded: LoadedColBERT, data: BeirSplit, run: dict[str, list[str]], top_k: int = 100,
                   batch_size: int = 32) -> dict[str, list[str]]:
    """Rescore each query's first `top_k` candidates of `run` with MaxSim; returns the reordered run."""
    doc_index = {d: i for i, d in enumerate(data.doc_ids)}
    needed = sorted({doc_index[d] for qid in data.query_ids for d in run.get(qid, [])[:top_k] if d in doc_index})
    d_flat, d_off = encode_token_vectors(loaded, [data.doc_texts[i] for i in needed], "doc", batch_size)
    where = {doc: r for r, doc in enumerate(needed)}
    q_flat, q_off = encode_token_vectors(loaded, data.query_texts, "query", batch_size)
    out = {}
    for qi, qid in enumerate(data.query_ids):
        cands = [doc_index[d] for d in run.get(qid, [])[:top_k] if d in doc_index]
        if not cands:
            out[qid] = []
            continue
        q, qm = _padded(q_flat, q_off, [qi], int(np.diff(q_off).max()))
        d, dm = _padded(d_flat, d_off, [where[c] for c in cands], int(np.diff(d_off).max()))
        scores = np.asarray(maxsim_dense(q, qm, d, dm, loaded.model.spec.reduce))[0]
        out[qid] = [data.doc_ids[cands[j]] for j in np.argsort(-scores, kind="stable")]
    return out
