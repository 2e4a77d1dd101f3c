"""Prepared shards streamed into training batches: host memory bounded by the shuffle buffer, whatever the size of
the dataset.

Each process reads only its own shard files (data/shard_format.py). An epoch's records come from tf.data: the
process's files in an order drawn from (seed, epoch, process), `INTERLEAVE` of them read at a time, record by
record, through a shuffle buffer of `shuffle_buffer` records seeded the same way. The stream is a pure function of
(seed, epoch, process), so the step is the position, as with in-memory data: a resumed run rebuilds the epoch's
stream and skips the records of the steps already done. The skipped records are read but never parsed, so resuming
late in an epoch costs a read of that part of this host's shards (benchmarks/stream_memory.py measures the rate).
Only the same TensorFlow build is guaranteed to shuffle the same; a checkpoint resumed under another may see
another order for the rest of its epoch.

Every process runs the same number of steps per epoch (the minimum over processes, from the manifest), so the
processes never need to talk about data. With one process a batch is padded to the length bucket of its longest
text; with several, to the prepared maximum lengths, so that every process builds the same shapes by construction.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterator

import numpy as np

from jaxretrieval.data.shard_format import check_prepared, identity, shard_files
from jaxretrieval.errors import InputError
from jaxretrieval.files import UPath, local_copy

INTERLEAVE = 4  # shard files read at once: records of a batch mix files without holding many readers open

Assemble = Callable[[list[bytes], int, int], dict]  # (serialized records of one batch, epoch, index) -> batch


def _has_own_negatives(record):
    """tf predicate on a serialized record: it has negatives and they are its own (not drawn by `prepare`)."""
    import tensorflow as tf

    f = tf.io.parse_single_example(record, {"neg_ids": tf.io.VarLenFeature(tf.int64),
                                            "neg_random": tf.io.FixedLenFeature([1], tf.int64, [0])})
    return tf.logical_and(tf.size(f["neg_ids"].values) > 0, f["neg_random"][0] == 0)


@dataclasses.dataclass
class ShardSource:
    """A training batch source (train/tasks.py) over this process's prepared shards: `steps_per_epoch`,
    `fingerprint()`, `batch(step)`, and `stream(start, end)`, which the train loop reads in order."""

    files: list[UPath]  # this process's shard files
    assemble: Assemble
    local_batch: int
    steps_per_epoch: int
    seed: int
    process_index: int
    identity: dict  # data/shard_format.identity: the same on every process
    manifest: dict = dataclasses.field(default_factory=dict, repr=False)  # the prepared directory's, as checked
    shuffle_buffer: int = 10000
    only_own_negatives: bool = False  # skip records without negatives of their own (score distillation)
    _local: list[str] | None = dataclasses.field(default=None, init=False, repr=False)

    def fingerprint(self) -> dict:
        return self.identity

    def local_files(self) -> list[str]:
        """The shard files as local paths: a gs:// shard is copied into the local cache once (data/files.py)."""
        if self._local is None:
            self._local = [str(local_copy(f)) for f in self.files]
        return self._local

    def records(self, epoch: int, first: int, last: int):
        """tf.data batches of serialized records for batch indices [first, last) of `epoch`."""
        import tensorflow as tf

        tf.config.set_visible_devices([], "GPU")  # tf.data only; keep TensorFlow off accelerators
        rng = np.random.default_rng([self.seed, epoch, self.process_index + 1])
        files = self.local_files()
        order = [files[i] for i in rng.permutation(len(files))]
        ds = tf.data.Dataset.from_tensor_slices(order).interleave(
            tf.data.TFRecordDataset, cycle_length=min(INTERLEAVE, len(order)), block_length=1,
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if self.only_own_negatives:
            ds = ds.filter(_has_own_negatives)
        ds = ds.shuffle(self.shuffle_buffer, seed=int(rng.integers(2 ** 31 - 1)), reshuffle_each_iteration=False)
        ds = ds.take(last * self.local_batch).skip(first * self.local_batch)
        ds = ds.batch(self.local_batch, drop_remainder=True)
        options = tf.data.Options()
        options.deterministic = True
        return ds.with_options(options)

    def stream(self, start: int, end: int, prefetch: int = 2) -> Iterator[dict[str, np.ndarray]]:
        """Batches of steps [start, end), assembled in tf.data worker threads while the previous step runs."""
        import tensorflow as tf

        if end <= start:
            return
        example = self._assembled(start)
        keys = list(example)
        dtypes = [tf.as_dtype(example[k].dtype) for k in keys]
        spe = self.steps_per_epoch
        for epoch in range(start // spe, (end - 1) // spe + 1):
            first, last = max(start - epoch * spe, 0), min(end - epoch * spe, spe)
            ds = self.records(epoch, first, last).enumerate(first)

            def make(index, raw, epoch=epoch):
                out = self.assemble(list(raw), epoch, int(index))
                return tuple(out[k] for k in keys)

            ds = ds.map(lambda i, raw: tf.numpy_function(make, [i, raw], dtypes, stateful=False),
                        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            ds = ds.map(lambda *xs: dict(zip(keys, xs))).prefetch(prefetch)
            yield from ds.as_numpy_iterator()

    def _assembled(self, step: int) -> dict[str, np.ndarray]:
        epoch, index = divmod(step, self.steps_per_epoch)
        raw = next(iter(self.records(epoch, index, index + 1).as_numpy_iterator()))
        return self.assemble(list(raw), epoch, index)

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """One step's batch (reads its epoch's stream up to it: for shapes and tests, not for training)."""
        return self._assembled(step)


def open_shards(path: str, content: str, task: str, fingerprint: str | None, settings: dict[str, int],
                global_batch: int, seed: int, shuffle_buffer: int, process_index: int, process_count: int,
                make_assemble: Callable[[dict], Assemble], only_own_negatives: bool = False) -> ShardSource:
    """This process's source over a prepared directory, after `check_prepared` (shard_format.py) has held it
    against the run; `make_assemble(manifest)` builds the task's batch assembly (data/shard_batches.py)."""
    if shuffle_buffer < 1:
        raise InputError(f"data.shuffle_buffer must be >= 1, got {shuffle_buffer}", "config",
                         field="data.shuffle_buffer")
    manifest, steps = check_prepared(path, content, task, fingerprint, settings, global_batch, process_count,
                                     "with_negatives" if only_own_negatives else "examples")
    files = shard_files(path, manifest, process_index, process_count)
    return ShardSource(files, make_assemble(manifest), global_batch // process_count, steps, seed, process_index,
                       identity(path, manifest), manifest, shuffle_buffer, only_own_negatives)
