"""Distillation batches built from groups of teacher-space neighbours (topic-aware sampling, Hofstätter et al.,
SIGIR 2021, applied to embedding distillation).

Why: the similarity and relative losses only see in-batch pairs. In a random batch almost every pair is unrelated,
so the student learns the bulk of the similarity distribution and little about which of a few close texts ranks
first, which is what top-10 retrieval measures. A batch made of a few groups of mutual neighbours keeps both kinds
of pairs: close ones inside each group and unrelated ones across groups.

The grouping is a pure function of (vectors, seed, epoch) like every other batch order here, so resume stays exact.
Cost: one [W, W] similarity matrix per window of W texts, so time and memory grow linearly with the text count.
Several processes each compute the whole order from their own copy of the vectors; they agree as long as their
matrix products round alike (the same CPU kind). Broadcasting process 0's order would remove that condition.
"""

from __future__ import annotations

import numpy as np

from jaxretrieval.data.pipeline import shuffle_batches


def neighbour_groups(unit_vectors: np.ndarray, group: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Greedy partition of the rows into groups of `group` mutual neighbours (the last may be smaller): a random
    free row and its group - 1 most similar free rows, until no row is free.

    unit_vectors: float32[W, D], rows of unit norm (cosine = dot product). Returns row indices per group."""
    sims = unit_vectors @ unit_vectors.T  # [W, W]
    free = np.ones(len(unit_vectors), bool)
    groups = []
    for seed in rng.permutation(len(unit_vectors)):
        if not free[seed]:
            continue
        candidates = np.flatnonzero(free)
        take = min(group, len(candidates))
        scores = sims[seed, candidates]
        scores[candidates == seed] = np.inf  # the seed is always its own group's first member
        members = candidates[np.argpartition(-scores, take - 1)[:take]]
        free[members] = False
        groups.append(members)
    return groups


def neighbour_grouped_order(target_rows, n: int, lengths: np.ndarray, batch: int, group: int,
                            rng: np.random.Generator, window: int, by_length: bool) -> np.ndarray:
    """A permutation of range(n) whose consecutive `batch`-sized slices are made of neighbour groups.

    target_rows(rows) → float32[len(rows), D] unit teacher-target vectors of those rows (read lazily, a window at
    a time). Texts are shuffled and cut into windows of `window`; each window is partitioned into groups; the
    groups are shuffled, or, with by_length, sorted by their longest text within the window so that a batch pads
    to a similar length (batches are shuffled afterwards, as in length_grouped_order)."""
    order = rng.permutation(n)
    out = []
    for start in range(0, n, window):
        rows = order[start:start + window]
        groups = [rows[g] for g in neighbour_groups(np.asarray(target_rows(rows), np.float32), group, rng)]
        # A short group (what is left when the window is not a multiple of `group`) goes last: in the middle it
        # would shift every later group across a batch boundary. Only the last window can have one (the config
        # makes the window a multiple of the batch and the batch of the group), so it ends the whole order.
        short = [g for g in groups if len(g) < group]
        groups = [g for g in groups if len(g) == group]
        if by_length:
            groups.sort(key=lambda g: int(lengths[g].max()))
        else:
            groups = [groups[i] for i in rng.permutation(len(groups))]
        out.append(np.concatenate(groups + short))
    order = np.concatenate(out)
    return shuffle_batches(order, batch, rng) if by_length else order
