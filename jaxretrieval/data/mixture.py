"""A mixture of training sources behind the one batch-source interface the train loop reads.

Which source each global batch comes from is a pure function of (seed, step), drawn in blocks of steps from the
sources' shares (or in turn, round-robin), so every source's data position at any step is known without replaying
anything: exact resume mid-mixture needs the step alone, on every host alike. Each source keeps its own steps and
epochs (a small source cycles through its epochs faster than a large one); the mixture's nominal epoch is one
pass over every source's examples, in expectation.

With mixed batches instead, every step takes a fixed number of rows from every source (its share of the batch),
padded to one length and with text ids kept apart per source, so the duplicate masks never match texts of two
sources by their row numbers. The rows per source do not depend on the number of processes, but the global batch
is laid out by process (each process's rows of every source), so with dropout another process count puts the
masks on other rows.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any, Iterator

import numpy as np

from jaxretrieval.data.pipeline import iterate
from jaxretrieval.errors import InputError

SCHEDULE_BLOCK = 1024  # steps drawn per generator call; resuming at step t costs t / SCHEDULE_BLOCK draws, once
TEXT_ID_KEYS = ("query_text", "pos_doc", "neg_doc")  # text ids of the duplicate masks (data/pipeline.py)


def source_shares(sampling: str, sizes: list[int], weights: list[float], temperature: float = 1.0) -> np.ndarray:
    """float64[S], summing to 1: each source's share of the batches. sizes: examples per source."""
    if sampling == "weights":
        raw = np.asarray(weights, np.float64)
    elif sampling == "size":
        raw = np.asarray(sizes, np.float64)
    elif sampling == "size_temperature":  # as multilingual pretraining mixes languages: size ** (1 / T)
        raw = np.asarray(sizes, np.float64) ** (1.0 / temperature)
    elif sampling == "round_robin":
        raw = np.ones(len(sizes))
    else:
        raise ValueError(f"unknown sampling {sampling!r}")
    return raw / raw.sum()


def batch_rows(shares: np.ndarray, batch_size: int, unit: int) -> list[int]:
    """Each source's rows of a mixed batch: batch_size split by the shares in multiples of `unit` (the process
    count, so each process holds its slice of every source's rows), by largest remainder."""
    units = batch_size // unit
    exact = shares * units
    rows = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - rows), kind="stable")[:units - rows.sum()]:
        rows[i] += 1
    return [int(r) * unit for r in rows]


@dataclasses.dataclass
class MixtureSource:
    """A batch source over several sources (each with `batch(step)`, `steps_per_epoch`, `fingerprint()`, and
    optionally `stream`), by one-source batches drawn by `shares` or in turn, or by mixed batches of `rows`."""

    sources: list[Any]
    names: list[str]
    shares: np.ndarray  # float64[S]: each source's share of the batches (one-source) or of each batch's rows
    rows: list[int]  # each source's global rows per step it takes: its batch, or its part of a mixed batch
    seed: int
    one_source: bool = True
    round_robin: bool = False
    pad_id: int = 0  # ids padded to a common length across sources (mixed batches)
    _blocks: dict = dataclasses.field(default_factory=dict, init=False, repr=False)
    _before: list = dataclasses.field(default_factory=lambda: [None], init=False, repr=False)
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self):
        self._before = [np.zeros(len(self.sources), np.int64)]  # counts before block b

    # -- the schedule ---------------------------------------------------------------------------------------------
    def _block(self, b: int) -> np.ndarray:
        """int64[SCHEDULE_BLOCK]: the source of each step of block b."""
        with self._lock:
            if b not in self._blocks:
                if self.round_robin:
                    steps = np.arange(b * SCHEDULE_BLOCK, (b + 1) * SCHEDULE_BLOCK)
                    self._blocks[b] = steps % len(self.sources)
                else:
                    rng = np.random.default_rng([self.seed, 0x6D697874, b])
                    self._blocks[b] = rng.choice(len(self.sources), SCHEDULE_BLOCK, p=self.shares)
                for old in sorted(self._blocks)[:-4]:
                    del self._blocks[old]
            return self._blocks[b]

    def schedule(self, start: int, end: int) -> np.ndarray:
        """int64[end - start]: the source of each step in [start, end) (one-source batches)."""
        parts = []
        for b in range(start // SCHEDULE_BLOCK, (max(end, start + 1) - 1) // SCHEDULE_BLOCK + 1):
            lo, hi = max(start - b * SCHEDULE_BLOCK, 0), min(end - b * SCHEDULE_BLOCK, SCHEDULE_BLOCK)
            parts.append(self._block(b)[lo:hi])
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def position(self, step: int) -> np.ndarray:
        """int64[S]: each source's own steps taken before global `step`: where its data stands."""
        if not self.one_source:
            return np.full(len(self.sources), step, np.int64)
        b = step // SCHEDULE_BLOCK
        while len(self._before) <= b:
            done = len(self._before) - 1
            self._before.append(self._before[done] + np.bincount(self._block(done), minlength=len(self.sources)))
        partial = np.bincount(self._block(b)[:step - b * SCHEDULE_BLOCK], minlength=len(self.sources))
        return self._before[b] + partial

    def data_position(self, step: int) -> dict[str, int]:
        """{source name: its steps taken} at global `step`, saved with each checkpoint and checked on resume."""
        return dict(zip(self.names, (int(x) for x in self.position(step))))

    # -- the batch-source interface -------------------------------------------------------------------------------
    @property
    def steps_per_epoch(self) -> int:
        if self.one_source:
            return sum(s.steps_per_epoch for s in self.sources)
        return max(1, sum(s.steps_per_epoch * r for s, r in zip(self.sources, self.rows)) // sum(self.rows))

    def fingerprint(self) -> dict:
        return {"mixture": [{"name": n, "share": round(float(p), 9), **s.fingerprint()}
                            for n, p, s in zip(self.names, self.shares, self.sources)],
                "batches": "one source" if self.one_source else "mixed",
                "order": "round robin" if self.round_robin else "random"}

    def batch(self, step: int) -> dict[str, np.ndarray]:
        if self.one_source:
            s = int(self.schedule(step, step + 1)[0])
            return self.sources[s].batch(int(self.position(step)[s]))
        return self.combine([s.batch(step) for s in self.sources])

    def stream(self, start: int, end: int, prefetch: int = 2) -> Iterator[dict[str, np.ndarray]]:
        """Batches of steps [start, end): each source's own pipeline, read in the schedule's order."""
        if end <= start:
            return
        if not self.one_source:
            streams = [iterate(s, start, end, prefetch) for s in self.sources]
            for _ in range(start, end):
                yield self.combine([next(it) for it in streams])
            return
        order = self.schedule(start, end)
        begin, counts = self.position(start), np.bincount(order, minlength=len(self.sources))
        streams = [iterate(s, int(b), int(b + n), prefetch) if n else None
                   for s, b, n in zip(self.sources, begin, counts)]
        for s in order:
            yield next(streams[s])

    def combine(self, parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """One mixed batch from every source's rows (this process's slice of each): padded to the longest source
        on the last axis (ids with pad_id, masks and token types with 0), text ids moved apart per source."""
        out = {}
        for key in parts[0]:
            arrays = [p[key] for p in parts]
            if key in TEXT_ID_KEYS:  # a bijection per source; two sources' ids coincide with chance ~2^-31
                arrays = [((a.astype(np.int64) + _source_offset(i)) & 0x7FFFFFFF).astype(a.dtype)
                          for i, a in enumerate(arrays)]
            shapes = {a.shape[1:-1] for a in arrays}
            if len(shapes) > 1:
                raise InputError(f"mixed batches need the same {key} shape from every source, got "
                                 f"{dict(zip(self.names, (a.shape[1:] for a in arrays)))} (num_negatives must match; "
                                 f"or set data.batch_from_one_source=true)", "config", field="data.train")
            length = max(a.shape[-1] for a in arrays) if arrays[0].ndim > 1 else None
            if length is not None and any(a.shape[-1] != length for a in arrays):
                value = 0 if ("mask" in key or "types" in key) else self.pad_id
                arrays = [np.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, length - a.shape[-1])], constant_values=value)
                          for a in arrays]
            out[key] = np.concatenate(arrays)
        return out

    # -- logs -----------------------------------------------------------------------------------------------------
    def log_fields(self, start: int, end: int, losses: np.ndarray | None = None) -> dict[str, float]:
        """Per source: examples seen and epochs done by step `end`, and (one-source batches) the mean loss of its
        steps in [start, end) when `losses` holds those steps' losses. A mixed batch's loss cannot be split by
        source (each row's loss depends on the other sources' rows), so it has none."""
        position, rows = self.position(end), self.rows
        out: dict[str, float] = {}
        order = self.schedule(start, end) if self.one_source and losses is not None else None
        for i, (name, source) in enumerate(zip(self.names, self.sources)):
            out[f"source/{name}/examples"] = int(position[i]) * rows[i]
            out[f"source/{name}/epoch"] = float(position[i]) / source.steps_per_epoch
            if order is not None and np.any(order == i):
                out[f"source/{name}/loss"] = float(np.mean(losses[order == i]))
        return out


def _source_offset(i: int) -> int:
    return (i * 0x9E3779B1) & 0x7FFFFFFF
