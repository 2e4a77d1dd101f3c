"""Reranker losses against loop-based NumPy references, with masks and degenerate groups."""

import numpy as np
import pytest

from jaxretrieval.losses.ranking import listwise_ce_loss, pointwise_bce_loss, pointwise_mse_loss, ranknet_loss


def _data(seed=0):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(3, 5)) * 2
    labels = rng.integers(0, 4, size=(3, 5)) / 3.0
    mask = np.ones((3, 5), bool)
    mask[1, 3:] = False
    return scores, labels, mask


def sig(x):
    return 1 / (1 + np.exp(-x))


def test_pointwise_losses():
    s, y, m = _data()
    bce = [-(y[i, j] * np.log(sig(s[i, j])) + (1 - y[i, j]) * np.log(1 - sig(s[i, j])))
           for i in range(3) for j in range(5) if m[i, j]]
    np.testing.assert_allclose(pointwise_bce_loss(s, y, m), np.mean(bce), rtol=1e-5)
    mse = [(sig(s[i, j]) - y[i, j]) ** 2 for i in range(3) for j in range(5) if m[i, j]]
    np.testing.assert_allclose(pointwise_mse_loss(s, y, m), np.mean(mse), rtol=1e-5)
    assert np.isfinite(float(pointwise_bce_loss(np.array([[80.0, -80.0]]), np.array([[0.0, 1.0]]))))


def test_ranknet_weighted_by_label_gap():
    s, y, m = _data(1)
    total, weight = 0.0, 0.0
    for b in range(3):
        for i in range(5):
            for j in range(5):
                if m[b, i] and m[b, j] and y[b, i] > y[b, j]:
                    w = y[b, i] - y[b, j]
                    total += w * np.log1p(np.exp(s[b, j] - s[b, i]))
                    weight += w
    np.testing.assert_allclose(ranknet_loss(s, y, m), total / weight, rtol=1e-5)
    assert float(ranknet_loss(s, np.ones_like(y))) == 0.0  # all tied: nothing to rank, not NaN


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_listwise_cross_entropy_picks_column_zero(temperature):
    s, _, m = _data(2)
    ref = []
    for b in range(3):
        row = s[b][m[b]] / temperature
        ref.append(-(row[0] - np.log(np.exp(row - row.max()).sum()) - row.max()))
    np.testing.assert_allclose(listwise_ce_loss(s, m, temperature), np.mean(ref), rtol=1e-5)
