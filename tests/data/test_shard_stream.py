"""Streaming prepared shards: each process reads its own records once per epoch in a seeded order, the step is the
position (a stream started at step s is the tail of one started at 0), and records without negatives can be skipped."""

import numpy as np
import pytest

from jaxretrieval.data.shard_batches import PairTokenBatches, _features
from jaxretrieval.data.shard_stream import open_shards
from jaxretrieval.data.shard_writer import prepare_pairs
from jaxretrieval.data.text_ids import text_id
from jaxretrieval.data.train_pairs import PairRecord
from jaxretrieval.errors import InputError
from shard_fakes import FAKE

ROWS = 43


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """43 records with unique queries q0..q42; every third has no negatives of its own."""
    out = tmp_path_factory.mktemp("stream") / "shards"
    records = [PairRecord(f"q{i}", [f"d{i}"], [] if i % 3 == 0 else [f"n{i}"], None, None, i + 1) for i in range(ROWS)]
    prepare_pairs(records, out, 4, FAKE, "records", chunk=5)
    return out


WHICH = {text_id(f"q{i}"): i for i in range(ROWS)}


def record_numbers(raw, epoch, index):
    return {"i": np.array([WHICH[f["query_id"].int64_list.value[0]] for f in map(_features, raw)], np.int64)}


def _source(path, batch=4, processes=1, process=0, seed=0, buffer=16, own=False, assemble=record_numbers):
    return open_shards(str(path), "pair_tokens", "dense", "fake-tokenizer", FAKE.settings, batch, seed, buffer,
                       process, processes, lambda manifest: assemble, only_own_negatives=own)


def _steps(source, start, end):
    return [b["i"].tolist() for b in source.stream(start, end)]


def test_an_epoch_reads_each_record_once_in_a_seeded_order(prepared):
    source = _source(prepared)
    assert source.steps_per_epoch == ROWS // 4
    epochs = _steps(source, 0, 3 * source.steps_per_epoch)
    spe = source.steps_per_epoch
    for e in range(3):
        seen = [i for step in epochs[e * spe:(e + 1) * spe] for i in step]
        assert len(set(seen)) == len(seen) == spe * 4  # drop-remainder epochs, no record twice
    assert epochs[:spe] != epochs[spe:2 * spe]  # every epoch in another order
    assert _steps(_source(prepared), 0, spe) == epochs[:spe]  # ...the same in every run
    assert _steps(_source(prepared, seed=1), 0, spe) != epochs[:spe]
    assert _steps(_source(prepared, buffer=2), 0, spe) != epochs[:spe]
    assert sorted(epochs[0]) != epochs[0]


def test_the_step_is_the_position(prepared):
    source = _source(prepared)
    spe = source.steps_per_epoch
    straight = _steps(source, 0, 2 * spe + 3)
    for start in (1, spe - 1, spe, spe + 4):  # mid-epoch, the epoch's last step, an epoch boundary
        assert _steps(source, start, 2 * spe + 3) == straight[start:], start
    assert source.batch(spe + 2)["i"].tolist() == straight[spe + 2]
    assert _steps(source, 5, 5) == []


def test_processes_read_disjoint_shards_with_equal_step_counts(prepared):
    sources = [_source(prepared, batch=8, processes=2, process=p) for p in range(2)]
    assert [s.steps_per_epoch for s in sources] == [5, 5]  # 22 and 21 records, local batch 4
    mine = [{i for step in _steps(s, 0, 5) for i in step} for s in sources]
    assert {i % 4 for i in mine[0]} <= {0, 2} and {i % 4 for i in mine[1]} <= {1, 3}  # record i -> shard i % 4
    assert sources[0].fingerprint() == sources[1].fingerprint()


def test_records_without_their_own_negatives_can_be_skipped(prepared):
    source = _source(prepared, own=True)
    assert source.steps_per_epoch == 28 // 4  # 28 of the 43 records have negatives
    seen = [i for step in _steps(source, 0, source.steps_per_epoch) for i in step]
    assert len(seen) == 28 and not any(i % 3 == 0 for i in seen)


def test_fixed_lengths_give_every_process_one_shape(prepared):
    assemble = PairTokenBatches(2, 0, 0, 0, 1, (6,), (10,), False, "records")
    shapes = [{k: v.shape for k, v in _source(prepared, 8, 2, p, assemble=assemble).batch(1).items()}
              for p in range(2)]
    assert shapes[0] == shapes[1] and shapes[0]["neg_ids"] == (4, 2, 10) and shapes[0]["query_ids"] == (4, 6)


def test_a_bad_shuffle_buffer_is_named(prepared):
    with pytest.raises(InputError, match=r"config \[data.shuffle_buffer\]: data.shuffle_buffer must be >= 1"):
        _source(prepared, buffer=0)
