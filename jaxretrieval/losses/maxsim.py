"""Late-interaction (ColBERT) scoring: MaxSim between token-vector sets, without the full 4-D similarity tensor.

score(q, d) = Σ over real query tokens i of max over real document tokens j of q_i · d_j (ColBERT's definition);
reduce="mean" divides by the number of real query tokens (RAG-Retrieval's variant).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_MASKED = -1e4  # below any dot product of unit vectors, and finite so sums of it cannot overflow to -inf


def maxsim_dense(q: jax.Array, q_mask: jax.Array, d: jax.Array, d_mask: jax.Array, reduce: str = "sum"
                 ) -> jax.Array:
    """q float[Q, Lq, H], q_mask [Q, Lq]; d float[D, Ld, H], d_mask [D, Ld] → float32[Q, D]. Materializes
    [Q, D, Lq, Ld]: use maxsim_scores for anything but small inputs."""
    sims = jnp.einsum("qih,djh->qdij", q.astype(jnp.float32), d.astype(jnp.float32))
    sims = jnp.where(d_mask.astype(bool)[None, :, None, :], sims, _MASKED)
    best = jnp.where(q_mask.astype(bool)[:, None, :], sims.max(axis=-1), 0.0)  # [Q, D, Lq]
    total = best.sum(axis=-1)
    if reduce == "mean":
        return total / jnp.maximum(q_mask.astype(jnp.float32).sum(axis=-1), 1.0)[:, None]
    if reduce != "sum":
        raise ValueError(f"reduce must be 'sum' or 'mean', got {reduce!r}")
    return total


def maxsim_scores(q: jax.Array, q_mask: jax.Array, d: jax.Array, d_mask: jax.Array, reduce: str = "sum",
                  doc_chunk: int = 64) -> jax.Array:
    """maxsim_dense in chunks of `doc_chunk` documents: peak memory Q x doc_chunk x Lq x Ld floats, in the
    backward pass too (each chunk is recomputed under jax.checkpoint rather than stored)."""
    n = d.shape[0]
    if n <= doc_chunk:
        return maxsim_dense(q, q_mask, d, d_mask, reduce)
    chunks = -(-n // doc_chunk)
    pad = chunks * doc_chunk - n
    d_chunks = jnp.pad(d, ((0, pad), (0, 0), (0, 0))).reshape(chunks, doc_chunk, *d.shape[1:])
    m_chunks = jnp.pad(d_mask, ((0, pad), (0, 0))).reshape(chunks, doc_chunk, d_mask.shape[1])
    one = jax.checkpoint(lambda dm: maxsim_dense(q, q_mask, dm[0], dm[1], reduce))
    scores = jax.lax.map(one, (d_chunks, m_chunks))  # [chunks, Q, doc_chunk]
    return jnp.transpose(scores, (1, 0, 2)).reshape(q.shape[0], chunks * doc_chunk)[:, :n]
