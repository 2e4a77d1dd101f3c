"""Listwise KL against a loop-based NumPy reference: per group, masked, optionally min-max normalized teacher."""

import numpy as np
import pytest

from jaxretrieval.losses.listwise import listwise_kl_loss, margin_mse_loss, minmax_normalize


def ref_kl(student, teacher, temperature, mask):
    total = 0.0
    for s, t, m in zip(student, teacher, mask):
        s, t = s[m.astype(bool)] / temperature, t[m.astype(bool)] / temperature
        p = np.exp(t - t.max()) / np.exp(t - t.max()).sum()
        q = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
        total += np.sum(p * (np.log(p) - np.log(q)))
    return total / len(student)


def test_listwise_kl_is_per_group_with_masks_and_minmax():
    rng = np.random.default_rng(3)
    student, teacher = rng.normal(size=(4, 6)), rng.normal(size=(4, 6)) * 3
    mask = np.ones((4, 6), bool)
    mask[2, 4:] = False
    np.testing.assert_allclose(listwise_kl_loss(student, teacher, 0.5, mask), ref_kl(student, teacher, 0.5, mask),
                               rtol=1e-5)
    norm = np.asarray(minmax_normalize(teacher, mask))
    row = teacher[2, :4]
    np.testing.assert_allclose(norm[2, :4], (row - row.min()) / (row.max() - row.min()), rtol=1e-6)
    np.testing.assert_allclose(listwise_kl_loss(student, teacher, 1.0, mask, normalize_teacher=True),
                               ref_kl(student, norm, 1.0, mask), rtol=1e-5)
    # one query's scores never leak into another's distribution
    moved = teacher.copy()
    moved[0] += 100.0
    np.testing.assert_allclose(listwise_kl_loss(student, moved, 1.0), listwise_kl_loss(student, teacher, 1.0),
                               rtol=1e-5)
    assert float(listwise_kl_loss(teacher, teacher, 1.0)) == pytest.approx(0.0, abs=1e-6)
    assert np.isfinite(float(listwise_kl_loss(student, np.zeros((4, 6)), 1.0, normalize_teacher=True)))


def test_margin_mse_fits_margins_not_offsets():
    rng = np.random.default_rng(3)
    student, teacher = rng.normal(size=(5, 4)), rng.normal(size=(5, 4)) * 3
    reference = np.mean([((student[i, 0] - student[i, j]) - (teacher[i, 0] - teacher[i, j])) ** 2
                         for i in range(5) for j in range(1, 4)])
    np.testing.assert_allclose(margin_mse_loss(student, teacher), reference, rtol=1e-6)
    np.testing.assert_allclose(margin_mse_loss(student, teacher + 7.0), reference, rtol=1e-5)  # offset-free
    assert float(margin_mse_loss(teacher - 2.0, teacher)) == pytest.approx(0.0, abs=1e-6)
    assert float(margin_mse_loss(2 * teacher, teacher)) > 0  # the scale counts
