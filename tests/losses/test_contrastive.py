"""InfoNCE against a plain NumPy reference (loops, no vectorization tricks)."""

import jax
import numpy as np
import pytest

from jaxretrieval.losses.contrastive import infonce_loss


def _reference(q, d, ids, temperature, symmetric=False, qids=None):
    b = q.shape[0]

    def ce(row_scores, label, keep):
        s = np.array([row_scores[j] for j in range(len(row_scores)) if keep[j]])
        target = row_scores[label]
        m = s.max()
        return -(target - (m + np.log(np.exp(s - m).sum())))

    total = 0.0
    for i in range(b):
        scores = d @ q[i] / temperature
        keep = [j == i or ids[j] != ids[i] for j in range(len(d))]
        total += ce(scores, i, keep)
    loss = total / b
    if symmetric:
        qids = np.arange(b) if qids is None else qids
        back = 0.0
        for i in range(b):
            scores = q @ d[i] / temperature
            keep = [j == i or qids[j] != qids[i] for j in range(b)]
            back += ce(scores, i, keep)
        loss = 0.5 * (loss + back / b)
    return loss


@pytest.mark.parametrize("b,n,symmetric", [(1, 0, False), (4, 0, False), (3, 2, False), (5, 1, True), (2, 3, True)])
def test_infonce_matches_reference(b, n, symmetric):
    rng = np.random.default_rng(b * 10 + n)
    q = rng.normal(size=(b, 8)).astype(np.float32)
    d = rng.normal(size=(b + b * n, 8)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    ids = np.arange(b + b * n)
    if b * n > 1:
        ids[b] = ids[0]  # first hard negative duplicates query 0's positive
        d[b] = d[0]
    qids = np.arange(b)
    if b > 2:
        qids[1] = qids[0]
    ours = float(infonce_loss(q, d, ids, 0.05, symmetric, qids))
    assert ours == pytest.approx(_reference(q, d, ids, 0.05, symmetric, qids), rel=1e-5, abs=1e-5)


def test_duplicate_positive_is_not_a_negative():
    q = np.eye(2, dtype=np.float32)
    d = np.stack([q[0], q[1], q[0]])  # third doc repeats query 0's positive
    masked = float(infonce_loss(q, d, np.array([0, 1, 0]), 0.05))
    unmasked = float(infonce_loss(q, d, np.array([0, 1, 2]), 0.05))
    assert masked < unmasked
    assert masked == pytest.approx(float(infonce_loss(q, d[:2], np.array([0, 1]), 0.05)), rel=1e-6)


def test_gradient_is_finite_for_single_query():
    g = jax.grad(lambda q: infonce_loss(q, q, np.array([0]), 0.05))(np.ones((1, 4), np.float32))
    assert np.isfinite(np.asarray(g)).all()
