"""Distillation of per-query score lists (ColBERT, rerankers, dense): KL between the teacher's and the student's
softmax over each query's group of documents.

The distribution is per group (row), never across the batch: normalizing across the batch (as RAG-Retrieval's
reranker distillation does) mixes unrelated queries' scores into one softmax.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def minmax_normalize(scores: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Each row rescaled to [0, 1] over its valid entries; a constant row becomes all zeros (not NaN)."""
    scores = scores.astype(jnp.float32)
    valid = jnp.ones_like(scores, bool) if mask is None else mask.astype(bool)
    low = jnp.where(valid, scores, jnp.inf).min(axis=-1, keepdims=True)
    high = jnp.where(valid, scores, -jnp.inf).max(axis=-1, keepdims=True)
    return jnp.where(valid, (scores - low) / jnp.maximum(high - low, 1e-12), 0.0)


def listwise_kl_loss(student: jax.Array, teacher: jax.Array, temperature: float = 1.0,
                     mask: jax.Array | None = None, normalize_teacher: bool = False) -> jax.Array:
    """mean over rows of KL(softmax(teacher / T) ‖ softmax(student / T)); student, teacher float[B, G]; mask marks
    valid entries (a padded group). Returns a float32 scalar."""
    teacher = minmax_normalize(teacher, mask) if normalize_teacher else teacher.astype(jnp.float32)
    student = student.astype(jnp.float32)
    if mask is not None:
        teacher = jnp.where(mask, teacher, -1e9)
        student = jnp.where(mask, student, -1e9)
    log_p = jax.nn.log_softmax(teacher / temperature, axis=-1)
    log_q = jax.nn.log_softmax(student / temperature, axis=-1)
    p = jnp.exp(log_p)
    kl = jnp.where(p > 0, p * (log_p - log_q), 0.0).sum(axis=-1)
    return kl.mean()


def margin_mse_loss(student: jax.Array, teacher: jax.Array) -> jax.Array:
    """MarginMSE (Hofstätter et al., as sentence-transformers' MarginMSELoss): mean over every query and negative
    of ((s_pos − s_neg) − (t_pos − t_neg))². student, teacher float[B, G], the positive in column 0 and the
    negatives after it. Only the margins are fitted, so the teacher's offset does not matter, but its scale does:
    the student's raw scores (dot products, MaxSim sums) should be comparable to the teacher's. Returns a float32
    scalar."""
    student, teacher = student.astype(jnp.float32), teacher.astype(jnp.float32)
    return jnp.square((student[:, :1] - student[:, 1:]) - (teacher[:, :1] - teacher[:, 1:])).mean()
