"""Reranker losses on score groups float[B, G] (row = one query's candidates, column 0 the positive for the
listwise loss), with labels float[B, G] in [0, 1] and an optional validity mask [B, G]. All are means over the
valid entries (pointwise), pairs (pairwise) or rows (listwise); the per-group KL lives in listwise.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _valid(scores: jax.Array, mask: jax.Array | None) -> jax.Array:
    return jnp.ones(scores.shape, jnp.float32) if mask is None else mask.astype(jnp.float32)


def pointwise_bce_loss(scores: jax.Array, labels: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Binary cross-entropy of sigmoid(score) against soft labels (graded labels rescaled to [0, 1])."""
    s, y, m = scores.astype(jnp.float32), labels.astype(jnp.float32), _valid(scores, mask)
    per = jnp.maximum(s, 0) - s * y + jnp.log1p(jnp.exp(-jnp.abs(s)))  # stable BCE-with-logits
    return (per * m).sum() / jnp.maximum(m.sum(), 1.0)


def pointwise_mse_loss(scores: jax.Array, labels: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Squared error between sigmoid(score) and the label."""
    m = _valid(scores, mask)
    per = jnp.square(jax.nn.sigmoid(scores.astype(jnp.float32)) - labels.astype(jnp.float32))
    return (per * m).sum() / jnp.maximum(m.sum(), 1.0)


def ranknet_loss(scores: jax.Array, labels: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """RankNet within each group: for every pair (i, j) with label_i > label_j, log(1 + exp(s_j − s_i)), weighted by
    the label gap label_i − label_j; averaged over the total weight (0 when no group has a strictly ordered pair)."""
    s, y, m = scores.astype(jnp.float32), labels.astype(jnp.float32), _valid(scores, mask)
    gap = y[:, :, None] - y[:, None, :]  # [B, G, G]: i better than j by gap
    pair_ok = (gap > 0) & (m[:, :, None] > 0) & (m[:, None, :] > 0)
    weight = jnp.where(pair_ok, gap, 0.0)
    per = jax.nn.softplus(s[:, None, :] - s[:, :, None])
    return (per * weight).sum() / jnp.maximum(weight.sum(), 1e-12) * (weight.sum() > 0)


def listwise_ce_loss(scores: jax.Array, mask: jax.Array | None = None, temperature: float = 1.0) -> jax.Array:
    """Cross-entropy of picking column 0 (the positive) among the row's valid candidates."""
    s = scores.astype(jnp.float32) / temperature
    if mask is not None:
        s = jnp.where(mask.astype(bool), s, -1e9)
    return -jax.nn.log_softmax(s, axis=-1)[:, 0].mean()
