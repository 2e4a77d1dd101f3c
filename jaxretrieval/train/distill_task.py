"""The Stella/Jasper distillation task: texts, teacher vectors (precomputed `.npy` or online teachers), and the
weighted cosine / similarity / relative-similarity (+ L2) loss on the main output and every Matryoshka output.

Batches are rows of one text table, shuffled per epoch from (seed, epoch) alone, so the step is the data position
and resume is exact, as in the dense task. Teacher vectors ride in the batch; online teachers' parameters are the
task's `teacher_params` (passed to every step, never trained, never checkpointed), and their tokens ride in the batch.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
from flax import nnx

from jaxretrieval.bundles import LoadedEmbedder
from jaxretrieval.config import TrainConfig, matryoshka_weight
from jaxretrieval.convert.st_format import load_embedder
from jaxretrieval.data.dev_split import held_out
from jaxretrieval.data.jsonl import iter_texts, read_texts
from jaxretrieval.data.shard_batches import TextTokenBatches
from jaxretrieval.data.shard_format import is_prepared, tokenizer_fingerprint
from jaxretrieval.data.shard_stream import ShardSource, open_shards
from jaxretrieval.data.shard_writer import Tokenization, prepare_texts
from jaxretrieval.data.tokenize import length_buckets
from jaxretrieval.data.pipeline import TokenTable
from jaxretrieval.data.text_batches import TextBatchSource, load_teacher_vectors, open_teacher_vectors
from jaxretrieval.errors import InputError, require_one_batch
from jaxretrieval.losses.distill import stella_loss, teacher_target
from jaxretrieval.models.embedder import PACKED_INPUTS, Embedder, embed_inputs, l2_normalize


def distill_tokenization(cfg: TrainConfig, loaded: LoadedEmbedder) -> Tokenization:
    tok = loaded.tokenizer
    length = min(cfg.distill.max_length, tok.max_length)
    return Tokenization(lambda texts, kind: tok.tokenize(texts, kind, length)["input_ids"], tokenizer_fingerprint(tok),
                        {"max_length": length})


def _prepared_source(cfg: TrainConfig, loaded: LoadedEmbedder) -> ShardSource:
    """This process's stream of prepared texts and teacher vectors. Batches by length or by teacher neighbours need
    the whole dataset's order at once, so they are refused here rather than silently dropped."""
    d = cfg.distill
    for key, on in (("data.group_by_length", cfg.data.group_by_length), ("distill.neighbour_group", d.neighbour_group),
                    ("distill.teachers", d.teachers), ("data.packing", cfg.data.packing)):
        if on:
            raise InputError(f"{key} is not available with prepared data (a stream has no whole-dataset order or "
                             f"texts for online teachers); unset it or train from the text file", "config", field=key)
    tokens = distill_tokenization(cfg, loaded)
    length = tokens.settings["max_length"]
    buckets = (length,) if jax.process_count() > 1 else length_buckets(length, cfg.data.length_buckets_per_octave)

    def assemble(manifest: dict) -> TextTokenBatches:
        if d.teacher_vectors and len(d.teacher_vectors) != len(manifest["teacher_dims"]):
            raise InputError(f"distill.teacher_vectors names {len(d.teacher_vectors)} files, the prepared data "
                             f"carries {len(manifest['teacher_dims'])} teachers", "config",
                             field="distill.teacher_vectors")
        return TextTokenBatches(len(manifest["teacher_dims"]), loaded.tokenizer.pad_id, buckets)

    source = open_shards(cfg.data.train, "text_tokens", cfg.task, tokens.fingerprint, tokens.settings,
                         cfg.batch_size, cfg.seed, cfg.data.shuffle_buffer, jax.process_index(), jax.process_count(),
                         assemble)
    manifest = source.manifest
    source.identity = {**source.identity, "teacher_dims": manifest["teacher_dims"],
                       "teachers": manifest["teachers"], "teacher_weights": d.teacher_weights}
    return source


@dataclasses.dataclass
class DistillTask:
    cfg: TrainConfig
    source: TextBatchSource | ShardSource
    teacher_params: dict[str, Any]  # {"teacher0": params, ...} for online teachers
    teacher_graphdefs: list[Any]
    matryoshka_dims: tuple[int, ...]
    main_dim: int
    pointwise: bool  # the main output gets the cosine and L2 terms (its width equals the teacher's)
    normalized: bool  # the model's outputs are unit vectors already (its spec normalizes)
    vector_teachers: int  # teachers whose vectors ride in the batch (teacher_vectors{k}); 0: online teachers

    @staticmethod
    def prepare(cfg: TrainConfig, loaded: LoadedEmbedder, out: str, num_shards: int, overwrite: bool) -> dict:
        """data.train's texts, tokenized for the student, streamed into shards with their rows of every teacher
        vector file (online teachers encode texts during training and cannot be prepared)."""
        d = cfg.distill
        if not d.teacher_vectors:
            raise InputError("prepared distillation data carries teacher vectors: set distill.teacher_vectors (from "
                             "`jaxretrieval encode`)", "config", field="distill.teacher_vectors")
        vectors = [open_teacher_vectors(path) for path in d.teacher_vectors]
        for path, v in zip(d.teacher_vectors[1:], vectors[1:]):
            if len(v) != len(vectors[0]):
                raise InputError(f"{len(v)} rows, but {d.teacher_vectors[0]} has {len(vectors[0])}", path,
                                 field="distill.teacher_vectors")
        return prepare_texts(iter_texts(cfg.data.train), vectors, list(d.teacher_vectors), out, num_shards,
                             distill_tokenization(cfg, loaded), str(cfg.data.train), overwrite)

    @classmethod
    def build(cls, cfg: TrainConfig, loaded: LoadedEmbedder) -> "DistillTask":
        d = cfg.distill
        if is_prepared(cfg.data.train):
            source = _prepared_source(cfg, loaded)
            dims = source.identity["teacher_dims"]
            return cls.assembled(cfg, loaded, source, {}, [], sum(dims), len(dims))
        texts = read_texts(cfg.data.train)
        rows, keep = len(texts), held_out(cfg).keep_rows(texts)  # dev queries among the texts are not distilled on
        if len(keep) < len(texts):
            texts = [texts[i] for i in keep]
        require_one_batch(len(texts), cfg.batch_size, "texts", cfg.data.train)
        tok = loaded.tokenizer
        student = TokenTable.build(tok, texts, "doc", min(d.max_length, tok.max_length),
                                   cfg.data.length_buckets_per_octave)
        vectors, tables, pad_ids, graphdefs, teacher_params = [], [], [tok.pad_id], [], {}
        if d.teacher_vectors:
            vectors = [load_teacher_vectors(path, rows, cfg.data.train) for path in d.teacher_vectors]
            vectors = vectors if len(keep) == rows else [v[keep] for v in vectors]
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
                teacher_params[f"teacher{k}"] = params
                teacher_dim += teacher.model.dim
        source = TextBatchSource(student, vectors, tables, pad_ids, cfg.batch_size, cfg.seed, str(cfg.data.train),
                                 cfg.data.group_by_length, d.teacher_weights, d.neighbour_group, d.neighbour_window,
                                 jax.process_index(), jax.process_count(),
                                 tuple(map(str, d.teacher_vectors or d.teachers)), packing=cfg.data.packing,
                                 row_multiple=jax.local_device_count())
        return cls.assembled(cfg, loaded, source, teacher_params, graphdefs, teacher_dim, len(vectors))

    @classmethod
    def assembled(cls, cfg: TrainConfig, loaded: LoadedEmbedder, source, teacher_params, graphdefs, teacher_dim: int,
                  vector_teachers: int) -> "DistillTask":
        """The task from its parts, checked: what `build` reads from the data, and what an ahead-of-time compile
        (train/tpu_compile.py) knows without it."""
        d = cfg.distill
        # Only the cosine and L2 terms compare vectors coordinate by coordinate; the similarity and relative terms
        # compare in-batch similarity matrices, so without the former the student may keep any output width.
        pointwise = bool(d.cosine_weight or d.l2_weight)
        if pointwise and loaded.model.dim != teacher_dim:
            raise InputError(f"the student's output dim {loaded.model.dim} must equal the teacher dim {teacher_dim} "
                             f"for the cosine and L2 terms (set model.head_dim={teacher_dim} to add a projection "
                             f"head, or set distill.cosine_weight and distill.l2_weight to 0)", "config",
                             field="model.head_dim")
        spec = loaded.model.spec
        return cls(cfg, source, teacher_params, graphdefs, tuple(spec.matryoshka_dims), loaded.model.dim, pointwise,
                   spec.normalize, vector_teachers)

    # one stream of texts; its representations are {dim: vectors}
    def streams(self, batch) -> dict[str, dict[str, jax.Array]]:
        if "segments" in batch:  # the student's texts packed (data.packing)
            return {"text": {k: batch[k] for k in PACKED_INPUTS}}
        return {"text": {"ids": batch["ids"], "mask": batch["mask"]}}

    @staticmethod
    def encode(model: Embedder, name: str, inputs: dict[str, jax.Array], key) -> dict[int, jax.Array]:
        return embed_inputs(model, inputs, key, all_dims=True)

    def loss_from_reps(self, reps, batch, teacher_params=None) -> tuple[jax.Array, dict[str, jax.Array]]:
        d = self.cfg.distill
        outs = reps["text"]
        if not self.normalized:  # the losses compare cosines: a student without Normalize (and no head) is unit-scaled
            outs = {dim: l2_normalize(v) for dim, v in outs.items()}
        main = self.main_dim
        if self.vector_teachers:
            vectors = [batch[f"teacher_vectors{k}"] for k in range(self.vector_teachers)]
        else:
            vectors = [nnx.merge(g, teacher_params[f"teacher{k}"])(batch[f"teacher{k}_ids"], batch[f"teacher{k}_mask"])
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
            total = total + matryoshka_weight(self.cfg, dim) * part
            metrics.update({f"d{dim}/{k}": v for k, v in part_terms.items()})
        return total, metrics
