"""Distillation losses against loop-based NumPy references; finite values and gradients for batch sizes 1–3,
tied teacher scores and empty Matryoshka lists; the relative loss's bounded memory."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxretrieval.losses.distill import (cosine_loss, l2_loss, listwise_similarity_loss, relative_similarity_loss,
                                         similarity_loss, stella_loss, teacher_target)


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _vectors(b, ds, dt, seed=0):
    rng = np.random.default_rng(seed)
    return _unit(rng.normal(size=(b, ds))).astype(np.float32), _unit(rng.normal(size=(b, dt))).astype(np.float32)


def ref_cosine(s, t):
    return np.mean([1 - np.dot(s[i], t[i]) for i in range(len(s))])


def ref_l2(s, t):
    return np.mean([np.sum((s[i] - t[i]) ** 2) for i in range(len(s))])


def ref_similarity(s, t):
    b = len(s)
    return np.mean([(np.dot(s[i], s[j]) - np.dot(t[i], t[j])) ** 2 for i in range(b) for j in range(b)])


def ref_relative(s, t, margin):
    b = len(s)
    pairs = [(i, j) for i in range(b) for j in range(i + 1, b)]
    total, count = 0.0, 0
    for a in pairs:
        for c in pairs:
            ta, tc = np.dot(t[a[0]], t[a[1]]), np.dot(t[c[0]], t[c[1]])
            if ta > tc:
                sa, sc = np.dot(s[a[0]], s[a[1]]), np.dot(s[c[0]], s[c[1]])
                total += max(0.0, sc - sa + margin)
                count += 1
    return total / count if count else 0.0


def ref_listwise(s, t, temperature):
    b = len(s)
    total = 0.0
    for i in range(b):
        others = [j for j in range(b) if j != i]
        if len(others) < 2:
            return 0.0
        zs = np.array([np.dot(s[i], s[j]) for j in others]) / temperature
        zt = np.array([np.dot(t[i], t[j]) for j in others]) / temperature
        p = np.exp(zt - zt.max()) / np.exp(zt - zt.max()).sum()
        q = np.exp(zs - zs.max()) / np.exp(zs - zs.max()).sum()
        total += np.sum(p * (np.log(p) - np.log(q)))
    return total / b


@pytest.mark.parametrize("b", [1, 2, 3, 5, 9])
def test_losses_match_reference(b):
    s, t = _vectors(b, 6, 6, seed=b)
    np.testing.assert_allclose(cosine_loss(s, t), ref_cosine(s, t), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(l2_loss(s, t), ref_l2(s, t), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(similarity_loss(s, t), ref_similarity(s, t), rtol=1e-5, atol=1e-7)
    for chunk in (1, 2, 1024):  # chunks that do and do not divide the number of pairs
        np.testing.assert_allclose(relative_similarity_loss(s, t, 0.015, chunk), ref_relative(s, t, 0.015),
                                   rtol=1e-5, atol=1e-7)
    for temperature in (0.05, 1.0):
        np.testing.assert_allclose(listwise_similarity_loss(s, t, temperature), ref_listwise(s, t, temperature),
                                   rtol=1e-4, atol=1e-6)


def test_matryoshka_head_uses_only_similarity_terms():
    s, t = _vectors(7, 4, 10, seed=3)  # student dim 4 ≠ teacher dim 10
    total, terms = stella_loss(s, t, full_dimension=False)
    assert set(terms) == {"similarity", "relative"}
    np.testing.assert_allclose(total, 200 * ref_similarity(s, t) + 20 * ref_relative(s, t, 0.015), rtol=1e-5)
    total, terms = stella_loss(s, t, full_dimension=False, listwise_weight=2.0, listwise_temperature=0.1)
    assert set(terms) == {"similarity", "relative", "listwise"}
    np.testing.assert_allclose(total, 200 * ref_similarity(s, t) + 20 * ref_relative(s, t, 0.015)
                               + 2 * ref_listwise(s, t, 0.1), rtol=1e-5)


def test_listwise_is_zero_when_student_rows_order_like_the_teacher():
    """Only the order and spread of each row's neighbours count: the student equal to the teacher gives 0, and
    the loss grows as a row's nearest neighbour is swapped out."""
    s, t = _vectors(6, 8, 8, seed=7)
    assert abs(float(listwise_similarity_loss(t, t))) < 1e-6
    swapped = t[[0, 2, 1, 3, 4, 5]]
    assert float(listwise_similarity_loss(swapped, t)) > 0.01


@pytest.mark.parametrize("b", [1, 2, 3])
def test_small_batches_and_ties_give_finite_values_and_gradients(b):
    s, t = _vectors(b, 5, 5, seed=10 + b)
    tied = np.repeat(t[:1], b, axis=0)  # every teacher pair score equal: no ordered pair of pairs
    for teacher in (t, tied):
        loss, grad = jax.value_and_grad(
            lambda x: stella_loss(x, teacher, l2_weight=1.0, listwise_weight=1.0)[0])(jnp.asarray(s))
        assert np.isfinite(float(loss)) and np.isfinite(np.asarray(grad)).all()
    assert float(relative_similarity_loss(s, tied)) == 0.0


def test_relative_gradient_matches_unchunked():
    s, t = _vectors(12, 8, 8, seed=4)
    g_small = jax.grad(lambda x: relative_similarity_loss(x, t, chunk=7))(jnp.asarray(s))
    g_whole = jax.grad(lambda x: relative_similarity_loss(x, t, chunk=10_000))(jnp.asarray(s))
    np.testing.assert_allclose(g_small, g_whole, rtol=1e-5, atol=1e-7)


def test_relative_loss_memory_is_bounded_at_batch_128():
    """The full pairs-of-pairs tensor at B = 128 is P² = 8128² floats (264 MB); forward + backward must stay far
    below one copy of it."""
    b = 128
    s, t = _vectors(b, 64, 64, seed=5)
    step = jax.jit(jax.value_and_grad(lambda x: relative_similarity_loss(x, t, chunk=256)))
    temp = step.lower(jnp.asarray(s)).compile().memory_analysis().temp_size_in_bytes
    p = b * (b - 1) // 2
    assert temp < p * p * 4 / 8, f"temp {temp / 2**20:.1f} MiB"


def test_teacher_target_normalizes_each_teacher_then_the_concatenation():
    a, b = np.array([[3.0, 4.0]]), np.array([[0.0, 0.0, 2.0]])
    out = np.asarray(teacher_target([a, b]))
    np.testing.assert_allclose(out, np.array([[0.6, 0.8, 0, 0, 1.0]]) / np.sqrt(2), rtol=1e-6)


def test_weighted_teacher_target_cosine_is_the_weighted_mean_of_teacher_cosines():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(5, 4)), rng.normal(size=(5, 6))
    out = np.asarray(teacher_target([a, b], [0.3, 0.7]))
    cos = lambda x: (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (x / np.linalg.norm(x, axis=1, keepdims=True)).T  # noqa: E731
    np.testing.assert_allclose(out @ out.T, 0.3 * cos(a) + 0.7 * cos(b), atol=1e-5)
    np.testing.assert_allclose(np.asarray(teacher_target([a, b], [2.0, 2.0])), np.asarray(teacher_target([a, b])),
                               atol=1e-6)
