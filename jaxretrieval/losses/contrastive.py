"""InfoNCE for dense retrieval: each query against every positive and hard negative of the global batch.

Computed on batch-sharded global arrays inside jit, so under a device mesh the compiler gathers the documents
across devices and gradients flow back through the gather: in-batch negatives span the whole global batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_NEG_INF = -1e9  # finite, so a fully masked row gives a finite (if meaningless) loss rather than NaN


def infonce_loss(queries: jax.Array, docs: jax.Array, doc_ids: jax.Array, temperature: float = 0.05,
                 symmetric: bool = False, query_ids: jax.Array | None = None) -> jax.Array:
    """Mean cross-entropy of picking each query's own positive.

    queries: float[B, D]; docs: float[B + B·N, D], the B positives first (row i is query i's positive), then the
    hard negatives in any order; doc_ids: int[B + B·N], equal ids mean equal texts (e.g. a hash of the text).
    A document with the same id as query i's positive, other than the positive itself, is masked out of query i's
    negatives (it is a false negative). symmetric adds the positive→query direction, with duplicate queries masked
    by query_ids: int[B]. Returns a float32 scalar.
    """
    b = queries.shape[0]
    queries = queries.astype(jnp.float32)
    docs = docs.astype(jnp.float32)
    loss = infonce_from_scores(queries @ docs.T, doc_ids, temperature)
    own = jnp.arange(b)
    if symmetric:
        qids = own if query_ids is None else query_ids
        back = docs[:b] @ queries.T / temperature  # [B, B]
        dup_q = (qids[None, :] == qids[:, None]) & (own[None, :] != own[:, None])
        loss = 0.5 * (loss + _cross_entropy(jnp.where(dup_q, _NEG_INF, back), own))
    return loss


def infonce_from_scores(scores: jax.Array, doc_ids: jax.Array, temperature: float) -> jax.Array:
    """The query→document term on precomputed scores float[B, B + B·N] (row i's positive in column i), with the
    duplicate-document mask described in infonce_loss. Shared by dense and late-interaction (MaxSim) models."""
    b = scores.shape[0]
    own = jnp.arange(b)
    duplicate = (doc_ids[None, :] == doc_ids[:b, None]) & (jnp.arange(scores.shape[1])[None, :] != own[:, None])
    return _cross_entropy(jnp.where(duplicate, _NEG_INF, scores.astype(jnp.float32) / temperature), own)


def _cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(logp, labels[:, None], axis=1).mean()
