"""Mixtures: shares by weights / size / temperature, batch rows by largest remainder, a schedule that is a pure
function of (seed, step) with positions that match counting, sampled proportions within tolerance, one-source
batches read in order from each source, and mixed batches padded with text ids kept apart."""

import numpy as np
import pytest

from jaxretrieval.data.mixture import SCHEDULE_BLOCK, MixtureSource, batch_rows, source_shares
from jaxretrieval.data.pipeline import iterate


class CountingSource:
    """A source whose batch(step) says which source and which of its own steps made it."""

    def __init__(self, index, steps_per_epoch, rows=4, length=3):
        self.index, self.steps_per_epoch, self.rows, self.length = index, steps_per_epoch, rows, length

    def fingerprint(self):
        return {"source": f"s{self.index}"}

    def batch(self, step):
        ids = np.full((self.rows, self.length), 10 + self.index, np.int32)
        return {"query_ids": ids, "query_mask": np.ones_like(ids), "pos_doc": np.arange(self.rows, dtype=np.int32),
                "source": np.full(self.rows, self.index, np.int32), "own_step": np.full(self.rows, step, np.int32)}


def _mixture(shares, one_source=True, round_robin=False, rows=None, seed=3, spe=(5, 7, 9)):
    sources = [CountingSource(i, s, rows=(rows[i] if rows else 4), length=2 + i) for i, s in enumerate(spe)]
    return MixtureSource(sources, [f"s{i}" for i in range(len(spe))], np.asarray(shares, np.float64),
                         rows or [4] * len(spe), seed, one_source, round_robin)


def test_shares():
    np.testing.assert_allclose(source_shares("weights", [1, 1], [1, 3]), [0.25, 0.75])
    np.testing.assert_allclose(source_shares("size", [100, 300], [1, 1]), [0.25, 0.75])
    np.testing.assert_allclose(source_shares("size_temperature", [100, 400], [1, 1], 2.0), [1 / 3, 2 / 3])
    np.testing.assert_allclose(source_shares("round_robin", [5, 500], [9, 1]), [0.5, 0.5])


def test_batch_rows_split_by_largest_remainder_in_units():
    assert batch_rows(np.array([0.5, 0.3, 0.2]), 10, 1) == [5, 3, 2]
    assert batch_rows(np.array([0.45, 0.45, 0.1]), 8, 2) == [4, 4, 0]
    assert sum(batch_rows(np.array([0.34, 0.33, 0.33]), 32, 1)) == 32
    assert batch_rows(np.array([1 / 3, 1 / 3, 1 / 3]), 32, 8) == [16, 8, 8]


def test_sampled_proportions_match_the_shares_over_many_batches():
    shares = [0.6, 0.3, 0.1]
    m = _mixture(shares)
    order = m.schedule(0, 20000)
    observed = np.bincount(order, minlength=3) / len(order)
    # binomial standard error at n = 20000 is <= 0.0035; 4 sigma
    np.testing.assert_allclose(observed, shares, atol=0.014)
    assert not np.array_equal(order, _mixture(shares, seed=4).schedule(0, 20000))  # the seed matters


def test_schedule_and_positions_are_pure_functions_of_the_step():
    m = _mixture([0.5, 0.25, 0.25])
    full = m.schedule(0, 3 * SCHEDULE_BLOCK + 17)
    fresh = _mixture([0.5, 0.25, 0.25])  # another process, or a resumed run: nothing replayed
    np.testing.assert_array_equal(fresh.schedule(2000, 2100), full[2000:2100])
    for step in (0, 1, SCHEDULE_BLOCK - 1, SCHEDULE_BLOCK, 2 * SCHEDULE_BLOCK + 5, len(full)):
        np.testing.assert_array_equal(fresh.position(step), np.bincount(full[:step], minlength=3))
    assert fresh.data_position(10) == dict(zip(["s0", "s1", "s2"], map(int, np.bincount(full[:10], minlength=3))))


def test_round_robin_takes_the_sources_in_turn():
    m = _mixture([1 / 3] * 3, round_robin=True)
    np.testing.assert_array_equal(m.schedule(1022, 1028), [2, 0, 1, 2, 0, 1])


def test_one_source_stream_reads_each_source_in_its_own_order():
    m = _mixture([0.5, 0.3, 0.2])
    order = m.schedule(0, 40)
    got = list(iterate(m, 13, 40))
    assert [int(b["source"][0]) for b in got] == list(order[13:])
    for b, step in zip(got, range(13, 40)):
        s = int(b["source"][0])
        assert int(b["own_step"][0]) == int(m.position(step)[s])  # a source's steps count up across the mixture
    direct = m.batch(21)
    np.testing.assert_array_equal(direct["own_step"], got[21 - 13]["own_step"])
    assert m.steps_per_epoch == 5 + 7 + 9


def test_mixed_batches_pad_to_one_length_and_keep_text_ids_apart():
    m = _mixture([0.5, 0.25, 0.25], one_source=False, rows=[4, 2, 2])
    b = m.batch(6)
    assert b["query_ids"].shape == (8, 4)  # sources' lengths 2, 3, 4 padded to 4
    assert (b["query_ids"][:4, 2:] == 0).all() and (b["query_mask"][:4, 2:] == 0).all()
    np.testing.assert_array_equal(b["source"], [0, 0, 0, 0, 1, 1, 2, 2])
    assert (b["own_step"] == 6).all()  # every source takes a step each step
    assert len(set(b["pos_doc"].tolist())) == 8  # rows 0, 1 of each source are different texts
    np.testing.assert_array_equal(m.position(6), [6, 6, 6])
    assert m.steps_per_epoch == (5 * 4 + 7 * 2 + 9 * 2) // 8
    fields = m.log_fields(0, 6)
    assert [fields[f"source/s{i}/examples"] for i in range(3)] == [24, 12, 12]
    assert fields["source/s1/epoch"] == pytest.approx(6 / 7)
