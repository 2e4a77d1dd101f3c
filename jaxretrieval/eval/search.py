"""Exact top-k inner-product search in bounded memory.

The corpus is visited in fixed-size chunks and a running top-k is merged after each one, so memory is
O(query_chunk × corpus_chunk) whatever the corpus size (1M × 768 float32 works with the default chunks), and
a single compiled shape serves every chunk.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


@functools.partial(jax.jit, static_argnames="k")
def _merge_chunk(best_scores, best_index, queries, chunk, offset, num_valid, k: int):
    scores = queries @ chunk.T  # [q, c]
    valid = jnp.arange(chunk.shape[0]) < num_valid
    scores = jnp.where(valid[None, :], scores, -jnp.inf)
    chunk_scores, chunk_index = jax.lax.top_k(scores, min(k, chunk.shape[0]))
    scores = jnp.concatenate([best_scores, chunk_scores], axis=1)
    index = jnp.concatenate([best_index, chunk_index + offset], axis=1)
    top, pos = jax.lax.top_k(scores, k)
    return top, jnp.take_along_axis(index, pos, axis=1)


def exact_search(queries: np.ndarray, corpus: np.ndarray, k: int, query_chunk: int = 1024,
                 corpus_chunk: int = 32768) -> tuple[np.ndarray, np.ndarray]:
    """queries float[Q, D], corpus float[N, D] → (scores float32[Q, k'], indices int32[Q, k']), k' = min(k, N),
    best first."""
    if queries.ndim != 2 or corpus.ndim != 2 or queries.shape[1] != corpus.shape[1]:
        raise ValueError(f"shape mismatch: queries {queries.shape}, corpus {corpus.shape}")
    k = min(k, corpus.shape[0])
    corpus_chunk = min(corpus_chunk, corpus.shape[0])
    query_chunk = min(query_chunk, queries.shape[0])
    out_scores = np.zeros((queries.shape[0], k), np.float32)
    out_index = np.zeros((queries.shape[0], k), np.int32)
    for qs in range(0, queries.shape[0], query_chunk):
        q = _pad_rows(np.asarray(queries[qs:qs + query_chunk], np.float32), query_chunk)
        best_s = jnp.full((query_chunk, k), -jnp.inf, jnp.float32)
        best_i = jnp.zeros((query_chunk, k), jnp.int32)
        for cs in range(0, corpus.shape[0], corpus_chunk):
            c = np.asarray(corpus[cs:cs + corpus_chunk], np.float32)
            best_s, best_i = _merge_chunk(best_s, best_i, q, _pad_rows(c, corpus_chunk), np.int32(cs),
                                          np.int32(c.shape[0]), k)
        n = min(query_chunk, queries.shape[0] - qs)
        out_scores[qs:qs + n] = np.asarray(best_s)[:n]
        out_index[qs:qs + n] = np.asarray(best_i)[:n]
    return out_scores, out_index


def _pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
    if x.shape[0] == rows:
        return x
    return np.concatenate([x, np.zeros((rows - x.shape[0],) + x.shape[1:], x.dtype)], axis=0)
