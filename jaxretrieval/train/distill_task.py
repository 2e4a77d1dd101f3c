"""The Stella/Jasper distillation task: texts, teacher vectors (precomputed `.npy` or online teachers), and the
weighted cosine / similarity / relative-similarity (+ L2) loss on the main output and every Matryoshka output.

Batches are rows of one text table, shuffled per epoch from (seed, epoch) alone, so the step is the data position
and resume is exact, as in the dense task. Teacher vectors ride in the batch; online teachers' parameters are the
task's `aux` (passed to every step, never trained, never checkpointed), and their tokens ride in the batch.
"""

from __future__ import annotations

import dataclasses
import zlib
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from jaxretrieval.config import TrainConfig
from jaxretrieval.convert.st_import import LoadedEmbedder, load_embedder
from jaxretrieval.data.jsonl import read_texts
from jaxretrieval.data.neighbour_batches import neighbour_grouped_order
from jaxretrieval.data.pipeline import EpochCache, TokenTable, length_grouped_order
from jaxretrieval.errors import InputError, require_one_batch
from jaxretrieval.losses.distill import stella_loss, teacher_target
from jaxretrieval.models.embedder import Embedder, l2_normalize


def load_teacher_vectors(path: str, rows: int, texts_path: str) -> np.ndarray:
    p = Path(path)
    if not p.exists():
        raise InputError("teacher vectors not found", p, field="distill.teacher_vectors")
    try:
        vectors = np.load(p, mmap_mode="r")
    except (ValueError, OSError, EOFError) as e:  # not .npy, truncated or empty, a directory
        raise InputError(f"not a readable NumPy .npy file: {e!r}", p, field="distill.teacher_vectors") from None
    if not isinstance(vectors, np.ndarray):  # an .npz archive
        raise InputError("expected one .npy matrix (from `jaxretrieval encode`), got an .npz archive", p,
                         field="distill.teacher_vectors")
    if vectors.ndim != 2 or vectors.dtype.kind != "f":
        raise InputError(f"expected a float matrix, got {vectors.dtype}{list(vectors.shape)}", p,
                         field="distill.teacher_vectors")
    if vectors.shape[0] != rows:
        raise InputError(f"{vectors.shape[0]} rows, but {texts_path} has {rows} texts (one vector per text, in "
                         f"order)", p, field="distill.teacher_vectors")
    return vectors


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
                "teachers": [Path(t).name for t in self.teachers],
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
            ids, mask = table.pad(mine, table.padded_length(rows), pad_id)
            prefix = "" if k == 0 else f"teacher{k - 1}_"
            out[prefix + "ids"], out[prefix + "mask"] = ids, mask
        for k, vectors in enumerate(self.teacher_vectors):  # combined by teacher_target inside the step
            out[f"teacher_vectors{k}"] = np.asarray(vectors[mine])
        return out


@dataclasses.dataclass
class DistillTask:
    cfg: TrainConfig
    source: TextBatchSource
    aux: dict[str, Any]  # {"teacher0": params, ...} for online teachers
    teacher_graphdefs: list[Any]
    matryoshka_dims: tuple[int, ...]
    main_dim: int
    pointwise: bool  # the main output gets the cosine and L2 terms (its width equals the teacher's)
    normalized: bool  # the model's outputs are unit vectors already (its spec normalizes)

    @classmethod
    def build(cls, cfg: TrainConfig, loaded: LoadedEmbedder) -> "DistillTask":
        d = cfg.distill
        texts = read_texts(cfg.data.train)
        require_one_batch(len(texts), cfg.batch_size, "texts", cfg.data.train)
        tok = loaded.tokenizer
        student = TokenTable.build(tok, texts, "doc", min(d.max_length, tok.max_length),
                                   cfg.data.length_buckets_per_octave)
        vectors, tables, pad_ids, graphdefs, aux = [], [], [tok.pad_id], [], {}
        if d.teacher_vectors:
            vectors = [load_teacher_vectors(path, len(texts), cfg.data.train) for path in d.teacher_vectors]
            teacher_dim = sum(v.shape[1] for v in vectors)
        else:
            teacher_dim = 0
            for k, path in enumerate(d.teachers):
                teacher = load_embedder(path)
                t_tok = teacher.tokenizer
                tables.append(TokenTable.build(t_tok, texts, "doc", min(d.max_length, t_tok.max_length),
                                               cfg.data.length_buckets_per_octave))
                pad_ids.append(t_tok.pad_id)
                graphdef, params = nnx.split(teacher.model)
                graphdefs.append(graphdef)
                aux[f"teacher{k}"] = params
                teacher_dim += teacher.model.dim
        # Only the cosine and L2 terms compare vectors coordinate by coordinate; the similarity and relative terms
        # compare in-batch similarity matrices, so without the former the student may keep any output width.
        pointwise = bool(d.cosine_weight or d.l2_weight)
        if pointwise and loaded.model.dim != teacher_dim:
            raise InputError(f"the student's output dim {loaded.model.dim} must equal the teacher dim {teacher_dim} "
                             f"for the cosine and L2 terms (set model.head_dim={teacher_dim} to add a projection "
                             f"head, or set distill.cosine_weight and distill.l2_weight to 0)", "config",
                             field="model.head_dim")
        source = TextBatchSource(student, vectors, tables, pad_ids, cfg.batch_size, cfg.seed, str(cfg.data.train),
                                 cfg.data.group_by_length, d.teacher_weights, d.neighbour_group, d.neighbour_window,
                                 jax.process_index(), jax.process_count(),
                                 tuple(map(str, d.teacher_vectors or d.teachers)))
        spec = loaded.model.spec
        return cls(cfg, source, aux, graphdefs, tuple(spec.matryoshka_dims), loaded.model.dim, pointwise,
                   spec.normalize)

    def loss(self, model: Embedder, batch, aux, dropout_key) -> tuple[jax.Array, dict[str, jax.Array]]:
        return self.loss_from_reps({"text": self.encode(model, "text", batch, dropout_key)}, batch, aux)

    # GradCache (train/grad_cache.py): one stream of texts; representations are {dim: vectors}
    def streams(self, batch) -> dict[str, dict[str, jax.Array]]:
        return {"text": {"ids": batch["ids"], "mask": batch["mask"]}}

    @staticmethod
    def encode(model: Embedder, name: str, inputs: dict[str, jax.Array], key) -> dict[int, jax.Array]:
        return model.embed_all(inputs["ids"], inputs["mask"], dropout_key=key)

    def loss_from_reps(self, reps, batch, aux=None) -> tuple[jax.Array, dict[str, jax.Array]]:
        d = self.cfg.distill
        outs = reps["text"]
        if not self.normalized:  # the losses compare cosines: a student without Normalize (and no head) is unit-scaled
            outs = {dim: l2_normalize(v) for dim, v in outs.items()}
        main = self.main_dim
        if self.source.teacher_vectors:
            vectors = [batch[f"teacher_vectors{k}"] for k in range(len(self.source.teacher_vectors))]
        else:
            vectors = [nnx.merge(g, aux[f"teacher{k}"])(batch[f"teacher{k}_ids"], batch[f"teacher{k}_mask"])
                       for k, g in enumerate(self.teacher_graphdefs)]
        target = jax.lax.stop_gradient(teacher_target(vectors, d.teacher_weights))
        weights = dict(cosine_weight=d.cosine_weight, similarity_weight=d.similarity_weight,
                       relative_weight=d.relative_weight, l2_weight=d.l2_weight, margin=d.margin,
                       listwise_weight=d.listwise_weight, listwise_temperature=d.listwise_temperature,
                       chunk=d.relative_chunk)
        total, terms = stella_loss(outs[main], target, full_dimension=self.pointwise, **weights)
        metrics = dict(terms)
        for dim in self.matryoshka_dims:
            part, part_terms = stella_loss(outs[dim], target, full_dimension=False, **weights)
            total = total + part
            metrics.update({f"d{dim}/{k}": v for k, v in part_terms.items()})
        return total, metrics
