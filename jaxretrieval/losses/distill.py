"""Embedding distillation losses of Jasper and Stella (arXiv 2412.19048), plus plain L2, as pure functions.

Inputs are student vectors s float[B, Ds] and teacher vectors t float[B, Dt], both already L2-normalized. The
cosine and L2 losses need Ds == Dt; the similarity-based ones compare B x B similarity matrices, so they also
serve Matryoshka heads whose dimension differs from the teacher's.

Every function is finite for any batch size ≥ 1: a term with nothing to average (no pairs of pairs at B ≤ 2, or
all teacher scores tied) is 0, not the 0/0 that makes the reference implementation return NaN.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxretrieval.losses.listwise import listwise_kl_loss


def cosine_loss(s: jax.Array, t: jax.Array) -> jax.Array:
    """mean over the batch of 1 − s·t."""
    return jnp.mean(1.0 - jnp.sum(s.astype(jnp.float32) * t.astype(jnp.float32), axis=-1))


def l2_loss(s: jax.Array, t: jax.Array) -> jax.Array:
    """mean over the batch of the squared Euclidean distance ‖s − t‖² (LEAF / mxbai-edge style)."""
    diff = s.astype(jnp.float32) - t.astype(jnp.float32)
    return jnp.mean(jnp.sum(diff * diff, axis=-1))


def similarity_loss(s: jax.Array, t: jax.Array) -> jax.Array:
    """MSE between the in-batch similarity matrices S·Sᵀ and T·Tᵀ (all B² entries)."""
    s, t = s.astype(jnp.float32), t.astype(jnp.float32)
    return jnp.mean(jnp.square(s @ s.T - t @ t.T))


def _pair_scores(x: jax.Array) -> jax.Array:
    """Similarities of the B(B−1)/2 distinct text pairs (i < j): float32[P]."""
    b = x.shape[0]
    i, j = np.triu_indices(b, k=1)
    sim = x.astype(jnp.float32) @ x.astype(jnp.float32).T
    return sim[i, j]


def relative_similarity_loss(s: jax.Array, t: jax.Array, margin: float = 0.015, chunk: int = 1024) -> jax.Array:
    """Hinge max(0, s_b − s_a + margin) over every ordered pair (a, b) of in-batch text pairs that the teacher
    ranks a above b (t_a > t_b strictly: ties say nothing), averaged over those pairs.

    There are P = B(B−1)/2 text pairs and up to P² pairs of pairs (66M at B = 128), so the sum runs over chunks of
    `chunk` rows a: the forward holds chunk x P values at a time, and the backward recomputes each chunk
    (jax.checkpoint) instead of storing all of them.
    """
    ps, pt = _pair_scores(s), _pair_scores(t)
    p = ps.shape[0]
    if p < 2:
        return jnp.zeros((), jnp.float32)
    rows = min(chunk, p)
    n_chunks = -(-p // rows)
    pad = n_chunks * rows - p
    # padded rows get teacher score -inf: never ranked above anything, so they add nothing
    ps_rows = jnp.pad(ps, (0, pad)).reshape(n_chunks, rows)
    pt_rows = jnp.pad(pt, (0, pad), constant_values=-jnp.inf).reshape(n_chunks, rows)

    @jax.checkpoint
    def one_chunk(carry, rows_ab):
        sa, ta = rows_ab  # [rows]
        above = ta[:, None] > pt[None, :]  # teacher: pair a above pair b
        hinge = jnp.maximum(0.0, ps[None, :] - sa[:, None] + margin)
        total, count = carry
        # the count in float32: an int32 one wraps past 2^31 pairs of pairs (B >= 363)
        return (total + jnp.sum(jnp.where(above, hinge, 0.0)), count + jnp.sum(above, dtype=jnp.float32)), None

    (total, count), _ = jax.lax.scan(one_chunk, (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32)),
                                     (ps_rows, pt_rows))
    return total / jnp.maximum(count, 1.0)


def listwise_similarity_loss(s: jax.Array, t: jax.Array, temperature: float = 0.05) -> jax.Array:
    """Row-wise KL(teacher ‖ student) between softmax distributions over each text's in-batch neighbours (its own
    entry excluded), at scores cos / temperature, averaged over rows.

    The similarity and relative terms weigh every pair, or pair of pairs, of the batch alike; most are unrelated
    texts, while top-10 retrieval depends on the order of each text's few nearest ones. At a temperature like a
    contrastive model's (0.05), a row's teacher distribution puts its mass on those, so this term teaches the
    order at the top of each row (in-batch listwise distillation). B = 1 and 2 give 0 with zero gradient: a row
    with at most one unmasked neighbour puts all of both distributions on it.
    """
    b = s.shape[0]
    s, t = s.astype(jnp.float32), t.astype(jnp.float32)
    return listwise_kl_loss(s @ s.T, t @ t.T, temperature, mask=~jnp.eye(b, dtype=bool))


def teacher_target(teachers: list[jax.Array], weights: list[float] | None = None) -> jax.Array:
    """Each teacher's vectors normalized, concatenated, normalized again: float32[B, ΣDt].

    With weights w_k, teacher k's unit vectors are scaled by √w_k before the concatenation, so the target's
    cosine of two texts is Σ w_k cos_k / Σ w_k: the weighted mean of the teachers' cosines (equal weights: the
    plain mean, Jasper's multi-teacher target)."""
    def unit(x):
        x = x.astype(jnp.float32)
        return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    scales = [1.0] * len(teachers) if not weights else [float(w) ** 0.5 for w in weights]
    return unit(jnp.concatenate([a * unit(t) for a, t in zip(scales, teachers, strict=True)], axis=-1))


def stella_loss(s: jax.Array, t: jax.Array, *, cosine_weight: float = 10.0, similarity_weight: float = 200.0,
                relative_weight: float = 20.0, l2_weight: float = 0.0, margin: float = 0.015,
                listwise_weight: float = 0.0, listwise_temperature: float = 0.05,
                full_dimension: bool = True, chunk: int = 1024) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Weighted sum of the terms; full_dimension=False (a Matryoshka head) keeps only the similarity-based terms
    (similarity, relative, listwise). Returns (total, {term: value})."""
    terms = {"similarity": similarity_loss(s, t), "relative": relative_similarity_loss(s, t, margin, chunk)}
    total = similarity_weight * terms["similarity"] + relative_weight * terms["relative"]
    if listwise_weight:
        terms["listwise"] = listwise_similarity_loss(s, t, listwise_temperature)
        total = total + listwise_weight * terms["listwise"]
    if full_dimension:
        terms["cosine"] = cosine_loss(s, t)
        total = total + cosine_weight * terms["cosine"]
        if l2_weight:
            terms["l2"] = l2_loss(s, t)
            total = total + l2_weight * terms["l2"]
    return total, terms
