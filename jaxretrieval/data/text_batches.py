"""The distillation task's data: teacher vector files, and batches of texts with their teacher vectors (or the
online teachers' tokens).

Batches are rows of one text table, shuffled per epoch from (seed, epoch) alone (or grouped by length, or by
teacher-space neighbours), so the step is the data position and resume is exact.
"""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np

from jaxretrieval.data.neighbour_batches import neighbour_grouped_order
from jaxretrieval.data.packing import packed_stream
from jaxretrieval.data.pipeline import EpochCache, TokenTable, length_grouped_order
from jaxretrieval.errors import InputError
from jaxretrieval.files import local_copy, upath
from jaxretrieval.losses.distill import teacher_target


def open_teacher_vectors(path: str) -> np.ndarray:
    """A teacher vector file memory-mapped (a gs:// file is fetched first), checked to be one float matrix."""
    p = upath(path)
    if not p.exists():
        raise InputError("teacher vectors not found", p, field="distill.teacher_vectors")
    try:
        vectors = np.load(local_copy(p), mmap_mode="r")
    except (ValueError, OSError, EOFError) as e:  # not .npy, truncated or empty, a directory
        raise InputError(f"not a readable NumPy .npy file: {e!r}", p, field="distill.teacher_vectors") from None
    if not isinstance(vectors, np.ndarray):  # an .npz archive
        raise InputError("expected one .npy matrix (from `jaxretrieval encode`), got an .npz archive", p,
                         field="distill.teacher_vectors")
    if vectors.ndim != 2 or vectors.dtype.kind != "f":
        raise InputError(f"expected a float matrix, got {vectors.dtype}{list(vectors.shape)}", p,
                         field="distill.teacher_vectors")
    return vectors


def load_teacher_vectors(path: str, rows: int, texts_path: str) -> np.ndarray:
    """`open_teacher_vectors`, checked to hold one finite vector per text of `texts_path`."""
    p = upath(path)
    vectors = open_teacher_vectors(path)
    if vectors.shape[0] != rows:
        raise InputError(f"{vectors.shape[0]} rows, but {texts_path} has {rows} texts (one vector per text, in "
                         f"order)", p, field="distill.teacher_vectors")
    bad = first_nonfinite_row(vectors)
    if bad is not None:
        raise InputError(f"row {bad} (0-based, the vector of text {bad + 1} of {texts_path}) is not finite (NaN or "
                         f"Inf): re-encode the teacher", p, field="distill.teacher_vectors")
    return vectors


def first_nonfinite_row(vectors: np.ndarray, chunk: int = 65536) -> int | None:
    """The first row holding a NaN or Inf, read in chunks so a memory-mapped file is never loaded whole."""
    for start in range(0, len(vectors), chunk):
        ok = np.isfinite(np.asarray(vectors[start:start + chunk])).all(axis=1)
        if not ok.all():
            return start + int(np.argmin(ok))
    return None


@dataclasses.dataclass
class TextBatchSource:
    """This process's rows of each global batch: student tokens, and teacher vectors or teacher tokens."""

    student: TokenTable
    teacher_vectors: list[np.ndarray]  # one float[N, Dt] per teacher file (memory-mapped); empty for online
    teacher_tables: list[TokenTable]  # online teachers' tokens, one table per teacher
    pad_ids: list[int]  # student's, then each online teacher's
    global_batch: int
    seed: int
    source: str
    group_by_length: bool = False
    teacher_weights: list[float] | None = None
    neighbour_group: int = 0  # > 0: batches of teacher-neighbour groups of this size (data/neighbour_batches.py)
    neighbour_window: int = 16384
    process_index: int = 0
    process_count: int = 1
    teachers: tuple[str, ...] = ()  # the teacher vector files, or the online teachers' model directories
    packing: bool = False  # the student's texts packed (data/packing.py); online teachers' tokens stay padded
    row_multiple: int = 1  # packed row counts are multiples of this (the devices one process feeds)
    _orders: EpochCache = dataclasses.field(init=False, repr=False)

    def __post_init__(self):
        self._orders = EpochCache(self._epoch_order)

    @property
    def steps_per_epoch(self) -> int:
        return (len(self.student.offsets) - 1) // self.global_batch

    def fingerprint(self) -> dict:
        """What a checkpoint must have been trained on to be resumed: the texts, and the teachers' identity (file or
        model names, a checksum of 64 spread rows of each vector file, the weights), since a run resumed against
        other vectors of the same width would train on without complaint."""
        def rows_checksum(v: np.ndarray) -> int:
            rows = np.linspace(0, len(v) - 1, min(64, len(v))).astype(int)
            return zlib.crc32(np.ascontiguousarray(v[rows]).tobytes())

        return {"texts": len(self.student.offsets) - 1, "source": self.source,
                "teacher_dim": sum(int(v.shape[1]) for v in self.teacher_vectors) or None,
                "teachers": [upath(t).name for t in self.teachers],
                "teacher_rows_crc32": [rows_checksum(v) for v in self.teacher_vectors],
                "teacher_weights": self.teacher_weights}

    def target_rows(self, rows: np.ndarray) -> np.ndarray:
        """The combined teacher target of these rows, as the loss sees it: float32[len(rows), ΣDt]."""
        return np.asarray(teacher_target([v[rows] for v in self.teacher_vectors], self.teacher_weights))

    def _epoch_order(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch])
        n = len(self.student.offsets) - 1
        if self.neighbour_group:
            return neighbour_grouped_order(self.target_rows, n, self.student.lengths, self.global_batch,
                                           self.neighbour_group, rng, self.neighbour_window, self.group_by_length)
        if self.group_by_length:
            return length_grouped_order(self.student.lengths, self.global_batch, rng)
        return rng.permutation(n)

    def batch(self, step: int) -> dict[str, np.ndarray]:
        epoch, index = divmod(step, self.steps_per_epoch)
        rows = self._orders(epoch)[index * self.global_batch:(index + 1) * self.global_batch]
        local = self.global_batch // self.process_count
        mine = rows[self.process_index * local:(self.process_index + 1) * local]
        out = {}
        tables = [self.student] + self.teacher_tables
        for k, (table, pad_id) in enumerate(zip(tables, self.pad_ids)):
            if k == 0 and self.packing:
                shares = [rows[p * local:(p + 1) * local] for p in range(self.process_count)]
                out.update(packed_stream([table.texts(s) for s in shares],
                                         [np.arange(p * local, (p + 1) * local) for p in range(self.process_count)],
                                         table.buckets[-1], pad_id, self.process_index, self.row_multiple))
                continue
            ids, mask = table.pad(mine, table.padded_length(rows), pad_id)
            prefix = "" if k == 0 else f"teacher{k - 1}_"
            out[prefix + "ids"], out[prefix + "mask"] = ids, mask
        for k, vectors in enumerate(self.teacher_vectors):  # combined by teacher_target inside the step
            out[f"teacher_vectors{k}"] = np.asarray(vectors[mine])
        return out
