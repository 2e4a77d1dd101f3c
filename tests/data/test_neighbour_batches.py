"""Teacher-neighbour batches: a partition into groups of mutual neighbours, a deterministic permutation, and batches
that pad like length-grouped ones when asked."""

import numpy as np

from jaxretrieval.data.neighbour_batches import neighbour_grouped_order, neighbour_groups


def _clusters(k: int, size: int, dim: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)) * 5
    labels = np.repeat(np.arange(k), size)
    x = centres[labels] + rng.normal(size=(k * size, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


def test_groups_partition_the_rows_and_recover_tight_clusters():
    x, labels = _clusters(k=6, size=8)
    perm = np.random.default_rng(1).permutation(len(x))  # clusters must not be found by row order
    x, labels = x[perm], labels[perm]
    groups = neighbour_groups(x, 8, np.random.default_rng(0))
    assert sorted(np.concatenate(groups).tolist()) == list(range(len(x)))
    assert all(len(g) == 8 for g in groups)
    assert all(len(set(labels[g])) == 1 for g in groups)  # each group is one cluster


def test_last_group_takes_what_is_left():
    x, _ = _clusters(k=3, size=5)
    groups = neighbour_groups(x, 4, np.random.default_rng(0))
    assert sorted(len(g) for g in groups) == [3, 4, 4, 4]


def test_order_is_a_deterministic_permutation_and_length_grouping_reduces_padding():
    x, labels = _clusters(k=16, size=8, seed=2)
    n, batch = len(x), 16
    lengths = np.random.default_rng(3).integers(4, 256, n)
    target = lambda rows: x[rows]  # noqa: E731
    orders = {}
    for by_length in (False, True):
        a = neighbour_grouped_order(target, n, lengths, batch, 8, np.random.default_rng([0, 1]), 64, by_length)
        b = neighbour_grouped_order(target, n, lengths, batch, 8, np.random.default_rng([0, 1]), 64, by_length)
        np.testing.assert_array_equal(a, b)
        assert sorted(a.tolist()) == list(range(n))
        orders[by_length] = a
    padded = {k: sum(int(lengths[o[i:i + batch]].max()) for i in range(0, n, batch)) for k, o in orders.items()}
    assert padded[True] < padded[False]
    # without length grouping and with one window, whole groups are kept together: batch slices are unions of groups
    o = neighbour_grouped_order(target, n, lengths, batch, 8, np.random.default_rng(5), n, False)
    assert all(len(set(labels[o[i:i + 8]])) == 1 for i in range(0, n, 8))


def test_a_short_group_goes_last_so_every_batch_is_whole_groups(monkeypatch):
    """109 texts in groups of 8 leave one group of 5. Wherever it was drawn, it must end the order: in the middle
    it would shift every later group across a batch boundary (and split its neighbours between two batches)."""
    import jaxretrieval.data.neighbour_batches as nb

    x, _ = _clusters(k=14, size=8, seed=4)
    n, batch = 109, 16
    x = x[:n]
    lengths = np.random.default_rng(6).integers(4, 256, n)
    real = nb.neighbour_groups
    for seed in range(4):
        for by_length in (False, True):
            seen, made = [], []
            monkeypatch.setattr(nb, "neighbour_groups", lambda *a: made.append(real(*a)) or made[-1])
            order = nb.neighbour_grouped_order(lambda rows: seen.append(rows) or x[rows], n, lengths, batch, 8,
                                               np.random.default_rng(seed), 112, by_length)
            groups = {frozenset(seen[0][g].tolist()) for g in made[0]}
            assert sorted(len(g) for g in groups)[0] == 5
            assert all(frozenset(order[i:i + 8].tolist()) in groups for i in range(0, 104, 8))
            assert frozenset(order[104:].tolist()) in groups
