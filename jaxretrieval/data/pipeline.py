"""The training input pipeline on tf.data.

Texts are tokenized once, up front, into two ragged token tables (queries, documents). Each step's rows come
from `epoch_plan`, a pure function of (seed, epoch), so the pipeline's position is just the global step: a
resumed run rebuilds the identical stream from the step stored in its checkpoint, with nothing replayed.

Per step, the padded length is chosen from the *global* batch (so every process builds the same shapes) and
rounded up to a bucket; each process then gathers and pads only its own rows, in tf.data worker threads, while
the previous step runs.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Callable, Iterator

import numpy as np

from jaxretrieval.data.packing import packed_stream
from jaxretrieval.data.tokenize import TextTokenizer, bucket_for, length_buckets, pad_ragged
from jaxretrieval.data.train_pairs import TrainPairs, epoch_plan


@dataclasses.dataclass
class TokenTable:
    """Ragged token ids: row i is flat[offsets[i]:offsets[i + 1]]."""

    flat: np.ndarray  # int32[total]
    offsets: np.ndarray  # int64[rows + 1]
    buckets: tuple[int, ...]

    @classmethod
    def build(cls, tokenizer: TextTokenizer, texts: list[str], kind: str, max_length: int,
              per_octave: int) -> "TokenTable":
        ids = tokenizer.tokenize(texts, kind, max_length)["input_ids"]
        lengths = np.array([len(x) for x in ids], np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        flat = np.fromiter((t for row in ids for t in row), np.int32, count=int(offsets[-1]))
        return cls(flat, offsets, length_buckets(max_length, per_octave=per_octave))

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def padded_length(self, rows: np.ndarray) -> int:
        return bucket_for(int(self.lengths[rows].max()), self.buckets)

    def texts(self, rows: np.ndarray) -> list[np.ndarray]:
        return [self.flat[self.offsets[i]:self.offsets[i + 1]] for i in rows]

    def pad(self, rows: np.ndarray, length: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
        """int32 [len(rows), length] ids and mask of the given rows."""
        return pad_ragged([self.flat[self.offsets[i]:self.offsets[i + 1]] for i in rows], len(rows), length, pad_id)


def length_grouped_order(lengths: np.ndarray, batch: int, rng: np.random.Generator, window: int = 64
                         ) -> np.ndarray:
    """A permutation whose consecutive `batch`-sized slices hold texts of similar length: shuffle, sort within
    windows of `window` batches, then shuffle the order of the batches. Padding drops to near zero for mixed-length
    data (short sentences no longer pad to the longest document in their batch) while every batch stays random."""
    order = rng.permutation(len(lengths))
    span = batch * window
    for start in range(0, len(order), span):
        part = order[start:start + span]
        order[start:start + span] = part[np.argsort(lengths[part], kind="stable")]
    return shuffle_batches(order, batch, rng)


def shuffle_batches(order: np.ndarray, batch: int, rng: np.random.Generator) -> np.ndarray:
    """Shuffle the order of the whole `batch`-sized slices of `order`, each slice kept intact (the remainder last):
    a length-sorted order becomes random batches that each still pad to one length."""
    whole = len(order) // batch
    batches = order[:whole * batch].reshape(whole, batch)[rng.permutation(whole)]
    return np.concatenate([batches.reshape(-1), order[whole * batch:]])


class EpochCache:
    """Per-epoch batch plans shared by tf.data's worker threads, which build steps on both sides of an epoch boundary
    at the same time: each plan is made once, under a lock, and the two newest are kept, so a step never reads the
    plan of the epoch another thread has just moved to."""

    def __init__(self, make: Callable[[int], object]):
        self._make, self._plans, self._lock = make, {}, threading.Lock()

    def __call__(self, epoch: int):
        with self._lock:
            if epoch not in self._plans:
                self._plans[epoch] = self._make(epoch)
                for old in sorted(self._plans)[:-2]:
                    del self._plans[old]
            return self._plans[epoch]


@dataclasses.dataclass
class DenseBatchSource:
    """Produces this process's share of each global batch for the dense contrastive task.

    Every process holds all examples, plans the global batch and keeps its slice of rows; padded lengths follow
    the global batch's longest text, so every process builds the same shapes. Data larger than RAM goes through
    prepared shards instead (data/shard_stream.py).
    """

    pairs: TrainPairs
    queries: TokenTable
    docs: TokenTable
    global_batch: int
    num_negatives: int
    seed: int
    pad_id: int
    process_index: int = 0
    process_count: int = 1
    fixed_lengths: tuple[int | None, int | None] | None = None  # (query, doc) padded lengths; None = buckets
    query_pad_id: int | None = None  # pad queries with this id instead (ColBERT query expansion: the mask token)
    with_scores: bool = False  # add teacher scores "pos_score" [B] and "neg_scores" [B, N] (distillation)
    packing: bool = False  # query_* and doc_* packed rows (data/packing.py) instead of padded query/pos/neg arrays
    row_multiple: int = 1  # packed row counts are multiples of this (the devices one process feeds)
    pack_queries: bool = True  # False: queries padded as without packing (ColBERT's fixed-length expanded queries)
    _plans: EpochCache = dataclasses.field(init=False, repr=False)

    def __post_init__(self):
        self._plans = EpochCache(lambda epoch: epoch_plan(
            self.pairs, self.seed, epoch, self.num_negatives, num_docs=len(self.docs.offsets) - 1,
            with_scores=self.with_scores))

    @property
    def steps_per_epoch(self) -> int:
        return len(self.pairs) // self.global_batch

    def fingerprint(self) -> dict:
        """What a checkpoint must have been trained on to be resumed with this source."""
        return {"examples": len(self.pairs), "queries": len(self.queries.offsets) - 1,
                "docs": len(self.docs.offsets) - 1, "source": self.pairs.source}

    def step_rows(self, step: int) -> tuple[np.ndarray, ...]:
        """Global (query ids, positive ids, negative ids[, positive scores, negative scores]) of one step;
        drop-remainder epochs."""
        epoch, index = divmod(step, self.steps_per_epoch)
        rows = slice(index * self.global_batch, (index + 1) * self.global_batch)
        return tuple(x[rows] for x in self._plans(epoch))

    def batch(self, step: int) -> dict[str, np.ndarray]:
        if self.packing:
            return self.packed_batch(step)
        q, p, n, *scores = self.step_rows(step)
        q_len, d_len = self.fixed_lengths or (None, None)
        q_len = q_len or self.queries.padded_length(q)
        d_len = d_len or self.docs.padded_length(np.concatenate([p, n.reshape(-1)]))
        local = self.global_batch // self.process_count
        mine = slice(self.process_index * local, (self.process_index + 1) * local)
        q, p, n = q[mine], p[mine], n[mine]
        scores = [x[mine] for x in scores]
        q_pad = self.pad_id if self.query_pad_id is None else self.query_pad_id
        q_ids, q_mask = self.queries.pad(q, q_len, q_pad)
        d_ids, d_mask = self.docs.pad(np.concatenate([p, n.reshape(-1)]), d_len, self.pad_id)
        k = len(p)
        extra = {"pos_score": scores[0], "neg_scores": scores[1]} if scores else {}
        return {**extra,
            "query_ids": q_ids, "query_mask": q_mask,
            "pos_ids": d_ids[:k], "pos_mask": d_mask[:k],
            "neg_ids": d_ids[k:].reshape(k, self.num_negatives, d_len),
            "neg_mask": d_mask[k:].reshape(k, self.num_negatives, d_len),
            "query_text": q.astype(np.int32), "pos_doc": p.astype(np.int32), "neg_doc": n.astype(np.int32),
        }


    def packed_batch(self, step: int) -> dict[str, np.ndarray]:
        """The same texts as `batch`, packed: query_{ids,segments,token_text,first,last} with this process's
        queries in slots 0..B-1, doc_* with its positives then each query's negatives; rows as long as the
        longest text may be (the tables' last bucket), so only the row counts vary between steps. Without
        pack_queries, queries come padded (query_ids, query_mask) and the docs carry doc_tokens for a multi-vector
        model to read its per-token vectors back."""
        q, p, n, *scores = self.step_rows(step)
        b, k = self.global_batch, self.num_negatives
        local = b // self.process_count
        shares = [slice(i * local, (i + 1) * local) for i in range(self.process_count)]
        # global vector order, as the padded step concatenates it: all positives, then each query's negatives
        neg_slots = b + np.arange(b * k).reshape(b, k)
        doc_slots = [np.concatenate([np.arange(b)[s], neg_slots[s].reshape(-1)]) for s in shares]
        q_pad = self.pad_id if self.query_pad_id is None else self.query_pad_id
        mine = shares[self.process_index]
        if self.pack_queries:
            out = packed_stream([self.queries.texts(q[s]) for s in shares], [np.arange(b)[s] for s in shares],
                                self.queries.buckets[-1], q_pad, self.process_index, self.row_multiple, "query_")
        else:
            q_len = (self.fixed_lengths or (None, None))[0] or self.queries.padded_length(q)
            out = dict(zip(("query_ids", "query_mask"), self.queries.pad(q[mine], q_len, q_pad)))
        d_len = self.docs.buckets[-1]
        out.update(packed_stream([self.docs.texts(np.concatenate([p[s], n[s].reshape(-1)])) for s in shares],
                                 doc_slots, d_len, self.pad_id, self.process_index, self.row_multiple, "doc_",
                                 token_columns=0 if self.pack_queries else d_len))
        extra = {"pos_score": scores[0][mine], "neg_scores": scores[1][mine]} if scores else {}
        return {**out, **extra, "query_text": q[mine].astype(np.int32), "pos_doc": p[mine].astype(np.int32),
                "neg_doc": n[mine].astype(np.int32)}


def iterate(source, start_step: int, end_step: int, prefetch: int = 2) -> Iterator[dict[str, np.ndarray]]:
    """Batches for steps [start_step, end_step), built by tf.data in background threads: by step for in-memory
    sources, in order from their own stream for sources that have one (prepared shards, mixtures)."""
    import tensorflow as tf

    if hasattr(source, "stream"):
        return source.stream(start_step, end_step, prefetch)

    tf.config.set_visible_devices([], "GPU")  # tf.data only; keep TensorFlow off accelerators
    example = source.batch(start_step) if end_step > start_step else None
    if example is None:
        return iter(())
    signature = {k: tf.TensorSpec([None] * v.ndim, tf.as_dtype(v.dtype)) for k, v in example.items()}

    def make(step):
        out = source.batch(int(step))
        return tuple(out[k] for k in signature)

    keys = list(signature)
    ds = tf.data.Dataset.range(start_step, end_step)
    ds = ds.map(lambda s: tf.numpy_function(make, [s], [signature[k].dtype for k in keys], stateful=False),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.map(lambda *xs: dict(zip(keys, xs))).prefetch(prefetch)
    options = tf.data.Options()
    options.deterministic = True
    ds = ds.with_options(options)
    return ds.as_numpy_iterator()
