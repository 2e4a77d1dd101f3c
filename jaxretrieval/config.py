"""Typed configuration: dataclasses with defaults, loaded from YAML files plus `key=value` overrides.

One schema serves every command. Unknown keys, wrong types and impossible values are errors that name the file
(or the override) and the dotted key, and unknown keys come with the closest valid names.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import posixpath
import types
import typing
from typing import Any

import yaml

from jaxretrieval.errors import InputError
from jaxretrieval.files import UPath, absolute, check_storage, upath
from jaxretrieval.sources import TrainSource, validate_sources

# LoRA's default targets: every projection of a Qwen2/Llama decoder block (attention and MLP).
DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclasses.dataclass
class ModelConfig:
    path: str = ""  # sentence-transformers or HF directory to start from
    pooling: str = ""  # override the directory's pooling ("mean", "cls", ...); empty = as the directory says
    max_query_length: int = 64
    max_doc_length: int = 256
    # > 0: the model's token limit instead of its directory's max_seq_length, as sentence-transformers'
    # `model.max_seq_length = N` (dense and distill). Caps max_doc_length and distill.max_length; export writes it.
    # (all-MiniLM-L6-v2 ships 256, which cuts 71% of SciFact's documents.)
    max_length: int = 0
    compute_dtype: str = "float32"  # float32 | bfloat16 (parameters stay float32)
    remat: str = "none"  # none | full | dots: recompute each layer's activations in the backward (models/layers.py)
    dropout: bool = True
    head_dim: int = 0  # > 0: append a new linear head to this dimension (then normalize), e.g. the teacher's
    matryoshka_dims: list[int] = dataclasses.field(default_factory=list)  # smaller output dims trained alongside
    matryoshka_mode: str = "heads"  # heads: a linear head per dim (Stella v5, Jasper) | slice: prefixes of one
    # each Matryoshka dim's loss weight, in the order of matryoshka_dims (the main output's is 1); empty: all 1,
    # as sentence-transformers' MatryoshkaLoss
    matryoshka_weights: list[float] = dataclasses.field(default_factory=list)
    # How new heads start. normal: small random weights (the student leaves its own geometry and must be taught the
    # teacher's). orthogonal: a semi-orthogonal kernel and zero bias, so a head at least as wide as its input keeps
    # every cosine of the student exactly (a narrower one is a random orthogonal projection). principal (distill):
    # as orthogonal, but fresh Matryoshka heads narrower than the pooled vector take the student's top principal
    # directions on a sample of the training texts, the best rank-d start for its cosines.
    head_init: str = "normal"
    lora_rank: int = 0  # > 0: LoRA adapters of this rank on the encoder's `lora_targets` linear layers
    lora_alpha: float = 16.0  # the update is scaled by lora_alpha / lora_rank
    lora_targets: list[str] = dataclasses.field(default_factory=lambda: list(DEFAULT_LORA_TARGETS))


@dataclasses.dataclass
class DataConfig:
    # jsonl {query, pos, neg, prompt?} file, a BEIR directory (its `split` qrels), an STS file (pairs scoring at
    # least min_score), or prepared shards; or a list of sources (TrainSource mappings or paths): a mixture
    train: str | list[TrainSource] = ""
    split: str = "train"  # BEIR split used for training pairs
    num_negatives: int = 0  # hard negatives per query, resampled each epoch
    prompt: str = ""  # instruction prepended to each query that has no prompt of its own
    # STS-B style file as training pairs (sentence 1 -> sentence 2): the pairs whose gold score is at least this
    min_score: float | None = None
    # A mixture's choice of source per batch: weights (each source's weight) | size (its batches an epoch, so a
    # nominal epoch passes over every source once in expectation; mixed batches: its examples) | size_temperature
    # (size ** (1 / temperature): temperature > 1 flattens toward uniform) | round_robin
    sampling: str = "size"
    temperature: float = 1.0
    # Every batch from one source, so in-batch negatives come from one domain and instructions stay consistent
    # (sentence-transformers' and FlagEmbedding's choice); otherwise each batch holds every source in proportion
    # (rows per source fixed by the sampling shares). Empty: one source per batch for dense and colbert.
    batch_from_one_source: bool | None = None
    length_buckets_per_octave: int = 1  # padded lengths per doubling: fewer compiled shapes vs less padding
    packing: bool = False  # several texts per row, no padding between them (data/packing.py)
    group_by_length: bool = False  # distill: batch texts of similar length together (random batch order)
    # prepared shards (`jaxretrieval prepare`): records held per host to shuffle the stream; memory, not data size
    shuffle_buffer: int = 10000
    # The dev split (data/dev_split.py): this fraction (< 1) or count (>= 1) of the training queries, chosen by a
    # hash of their ids, is held out of training and evaluated to choose on; 0: no dev split
    dev_queries: float = 0.0


SCORE_LOSSES = ("kl", "margin_mse")  # dense losses that distill the file's teacher scores


def matryoshka_weight(cfg: "TrainConfig", dim: int) -> float:
    """The loss weight of a Matryoshka dim: its model.matryoshka_weights entry, 1 when unset or not configured (a
    head carried over from the model directory)."""
    m = cfg.model
    return dict(zip(m.matryoshka_dims, m.matryoshka_weights)).get(dim, 1.0)


@dataclasses.dataclass
class LossConfig:
    # infonce | kl (per-query KL to the file's pos_scores/neg_scores) | margin_mse (the student's positive-negative
    # score margins fitted to the teacher's)
    name: str = "infonce"
    temperature: float = 0.05
    symmetric: bool = False


@dataclasses.dataclass
class DistillConfig:
    """Stella/Jasper embedding distillation (task: distill)."""

    # .npy files aligned row by row with data.train's texts (from `jaxretrieval encode`); several files are
    # several teachers, combined as `encode` combines them (each normalized, concatenated, normalized again)
    teacher_vectors: list[str] = dataclasses.field(default_factory=list)
    teachers: list[str] = dataclasses.field(default_factory=list)  # online mode: teacher model directories
    # one weight per teacher (file or model), in order; the target's similarity of two texts is the weighted mean
    # of the teachers' cosines. Empty: equal weights (Jasper)
    teacher_weights: list[float] = dataclasses.field(default_factory=list)
    cosine_weight: float = 10.0
    similarity_weight: float = 200.0
    relative_weight: float = 20.0
    l2_weight: float = 0.0
    margin: float = 0.015
    relative_chunk: int = 1024  # rows of the pairs-of-pairs matrix per chunk (bounded memory)
    # > 0: add row-wise KL between teacher and student in-batch neighbour distributions at cos / temperature
    # (losses/distill.py listwise_similarity_loss), on every head
    listwise_weight: float = 0.0
    listwise_temperature: float = 0.05
    max_length: int = 256  # token limit for student and online teachers
    # > 0: each batch is batch_size / neighbour_group groups of teacher-space nearest neighbours instead of random
    # texts (topic-aware sampling; data/neighbour_batches.py), searched within shuffled windows of neighbour_window
    # texts. Needs teacher_vectors; the group divides batch_size, and the window is a multiple of it.
    neighbour_group: int = 0
    neighbour_window: int = 16384


@dataclasses.dataclass
class ColBERTConfig:
    """Late-interaction model and losses (task: colbert)."""

    dim: int = 128
    projection: str = "linear"  # linear | ffn (2-layer residual FFN, then linear)
    query_length: int = 32
    doc_length: int = 180
    query_prefix: str = "[Q] "  # mapped to [unused0] when the vocabulary has no such token
    doc_prefix: str = "[D] "  # mapped to [unused1]
    attend_to_expansion_tokens: bool = False
    skiplist: bool = True  # drop punctuation tokens from document vectors
    reduce: str = "sum"  # sum (ColBERT) | mean (RAG-Retrieval)
    # contrastive (in-batch + hard negatives) | distill (KL to pos/neg_scores per query) | margin_mse (score margins)
    loss: str = "contrastive"
    normalize_teacher_scores: bool = False  # distill: min-max normalize each query's teacher scores
    doc_chunk: int = 64  # documents per MaxSim chunk (bounded memory)


@dataclasses.dataclass
class RerankerConfig:
    """Cross-encoder / LLM reranker (task: reranker)."""

    loss: str = "listwise"  # listwise (CE, positive first) | bce | mse | ranknet | distill (KL to teacher scores)
    group_size: int = 8  # candidates per query: 1 positive + group_size - 1 sampled negatives
    in_batch_negatives: int = 0  # plus this many random documents of the batch's other queries (label 0)
    max_length: int = 256  # pair tokens; the document is truncated, never the query
    query_format: str = "{}"
    doc_format: str = "{}"
    special_token: str = ""  # LLM rerankers: appended; its last hidden state is scored
    label_min: float = 0.0  # graded labels are rescaled to [0, 1] from [label_min, label_max]
    label_max: float = 1.0
    normalize_teacher_scores: bool = False  # distill: min-max per query group
    temperature: float = 1.0  # listwise CE and KL (cross-encoder logits are not cosine similarities)
    rerank_top: int = 100  # eval: rescore this many first-stage candidates
    first_stage: str = ""  # eval: dense model directory or run whose top-k is reranked (empty: no eval)


@dataclasses.dataclass
class OptimizerConfig:
    schedule: str = "linear"  # linear | cosine | constant (after warmup)
    warmup_ratio: float = 0.1  # fraction of `steps` spent warming up (ignored if warmup_steps > 0)
    warmup_steps: int = 0
    weight_decay: float = 0.01  # not applied to biases and LayerNorm
    max_grad_norm: float = 1.0
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8  # as torch.optim.AdamW and the Hugging Face Trainer
    # Parameters to train, comma-separated: "all", "head" (everything outside the encoder: projection, Matryoshka
    # and score heads), "lora" (the adapters of model.lora_rank), "encoder.layers[-3:]"
    # (a Python slice of layer indices), or a glob on dotted parameter paths ("encoder.embeddings.*"). The rest
    # is frozen: no gradient, no update, no optimizer state.
    trainable: str = "all"


@dataclasses.dataclass
class MeshConfig:
    data: int = -1  # -1: all devices not used by fsdp
    fsdp: int = 1


@dataclasses.dataclass
class EvalConfig:
    # BEIR directories; empty = no evaluation. With several, each dataset's metrics are named DATASET/METRIC and
    # METRIC is their mean (which eval.metric then picks the best step by)
    data: list[str] = dataclasses.field(default_factory=list)
    split: str = "test"
    batch_size: int = 64
    metric: str = "ndcg@10"  # picks the best step
    # STS-B style tab-separated files (score col 5, sentences 6-7): add Spearman to eval (named as eval.data's)
    sts: list[str] = dataclasses.field(default_factory=list)
    # The dev side. With a dev split, periodic evaluations and the best step look at dev only, and eval.data /
    # eval.sts (the test side) are evaluated once, at the end. dev_data: BEIR directories whose dev_split queries
    # are the dev set (data.dev_queries of them, or all when it is 0); empty: the training BEIR directories.
    dev_data: list[str] = dataclasses.field(default_factory=list)
    dev_split: str = "train"
    dev_sts: list[str] = dataclasses.field(default_factory=list)  # STS files evaluated on the dev side
    select_on: str = ""  # dev | test; empty: dev when there is a dev split


@dataclasses.dataclass
class TrainConfig:
    output_dir: str = ""  # a local path or gs://bucket/run (every host of a pod must save to the same place)
    # Several processes share a local output_dir only if it is one filesystem for all (NFS, or one machine);
    # say so here, otherwise a multi-process run needs a gs:// output_dir.
    shared_filesystem: bool = False
    task: str = "dense"  # dense (InfoNCE) | distill (Stella/Jasper) | colbert (MaxSim) | reranker (cross-encoder)
    init_from: str = ""  # run directory or RUN/checkpoints/STEP whose parameters start this run (stages)
    # Parameters, by optimizer.trainable's patterns ("head", "encoder.layers[-1:]", globs), that keep this run's
    # fresh initialization instead of init_from's values: "head" restarts the projection head as an isometry
    # (head_init orthogonal / principal) on the encoder a previous stage trained.
    init_fresh: str = ""
    seed: int = 0
    steps: int = 0  # 0: one pass over the data times `epochs`
    epochs: float = 1.0
    batch_size: int = 32  # global, across all devices and hosts
    learning_rate: float = 2e-5
    save_every: int = 500
    save_every_minutes: float = 0.0  # > 0: also save when this long has passed since the last save (all hosts agree)
    eval_every: int = 0  # 0: evaluate only at the end (when eval.data is set)
    log_every: int = 10  # each logged step waits for the device; keep it sparse on accelerators
    keep_checkpoints: int = 2
    keep_best: bool = False  # also keep the best step's parameters in OUTPUT_DIR/best, a run directory of its own
    # A step whose loss, gradient or updated parameters are not finite is skipped (parameters and optimizer state
    # unchanged) and counted; this many in a row stop the run, its checkpoints all finite.
    max_bad_steps: int = 10
    # Resuming with settings that change what the run computes (learning rate, batch size, seed, data, model, ...)
    # is an error unless this says the change is meant; the changes are then logged.
    resume_with_changes: bool = False
    grad_cache_chunk: int = 0  # > 0: GradCache with this many rows per chunk (memory flat in the batch size)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    mesh: MeshConfig = dataclasses.field(default_factory=MeshConfig)
    distill: DistillConfig = dataclasses.field(default_factory=DistillConfig)
    colbert: ColBERTConfig = dataclasses.field(default_factory=ColBERTConfig)
    reranker: RerankerConfig = dataclasses.field(default_factory=RerankerConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)

    def validate(self, source: str = "config") -> None:
        mixture = isinstance(self.data.train, list)  # sources.validate_sources checks each source's num_negatives
        num_teachers = len(self.distill.teacher_vectors or self.distill.teachers)
        checks = [
            (bool(self.output_dir), "output_dir", "must be set"),
            (bool(self.model.path), "model.path", "must be set"),
            (bool(self.data.train), "data.train", "must be set"),
            (self.batch_size > 0, "batch_size", "must be positive"),
            (self.steps >= 0, "steps", "must be >= 0"),
            (self.steps > 0 or self.epochs > 0, "epochs", "must be > 0 when steps is 0"),
            (self.learning_rate > 0, "learning_rate", "must be positive"),
            (self.save_every >= 0, "save_every", "must be >= 0"),
            (self.save_every_minutes >= 0, "save_every_minutes", "must be >= 0"),
            (self.keep_checkpoints >= 1, "keep_checkpoints", "must be >= 1 (a run keeps at least its newest one)"),
            (self.log_every >= 1, "log_every", "must be >= 1"),
            (self.max_bad_steps >= 1, "max_bad_steps", "must be >= 1"),
            (self.eval_every >= 0, "eval_every", "must be >= 0"),
            (self.data.num_negatives >= 0, "data.num_negatives", "must be >= 0"),
            (self.data.dev_queries >= 0, "data.dev_queries", "must be >= 0 (a fraction below 1, or a count)"),
            (self.eval.select_on in ("", "dev", "test"), "eval.select_on", "must be dev or test"),
            (self.eval.select_on != "dev" or self.has_dev, "eval.select_on",
             "is dev, but there is no dev split: set data.dev_queries, eval.dev_data or eval.dev_sts"),
            (not self.keep_best or bool(self.eval.data or self.eval.sts or self.has_dev), "keep_best",
             "needs an evaluation to pick the best step by (eval.data, eval.sts or a dev split)"),
            (not self.data.packing or (not self.grad_cache_chunk and not mixture), "data.packing",
             "is for one data.train source, without grad_cache_chunk (packed rows are not cut into chunks)"),
            (self.loss.name in ("infonce", *SCORE_LOSSES), "loss.name", "must be infonce, kl or margin_mse"),
            (self.loss.name not in SCORE_LOSSES or self.data.num_negatives > 0 or mixture, "data.num_negatives",
             f"must be > 0 for loss.name {self.loss.name} (the group each query is distilled over)"),
            (self.loss.temperature > 0, "loss.temperature", "must be positive"),
            (self.optimizer.schedule in ("linear", "cosine", "constant"), "optimizer.schedule",
             "must be linear, cosine or constant"),
            (0 <= self.optimizer.warmup_ratio < 1, "optimizer.warmup_ratio", "must be in [0, 1)"),
            (self.model.remat in ("none", "full", "dots"), "model.remat", "must be none, full or dots"),
            (self.model.compute_dtype in ("float32", "bfloat16"), "model.compute_dtype",
             "must be float32 or bfloat16"),
            (self.mesh.fsdp >= 1, "mesh.fsdp", "must be >= 1"),
            (self.task in ("dense", "distill", "colbert", "reranker"), "task",
             "must be dense, distill, colbert or reranker"),
            (self.reranker.loss in ("listwise", "bce", "mse", "ranknet", "distill"), "reranker.loss",
             "must be listwise, bce, mse, ranknet or distill"),
            (self.reranker.group_size >= 2, "reranker.group_size", "must be >= 2 (a positive and a negative)"),
            (self.colbert.projection in ("linear", "ffn"), "colbert.projection", "must be linear or ffn"),
            (self.colbert.reduce in ("sum", "mean"), "colbert.reduce", "must be sum or mean"),
            (self.colbert.loss in ("contrastive", "distill", "margin_mse"), "colbert.loss",
             "must be contrastive, distill or margin_mse"),
            (self.colbert.loss == "contrastive" or self.data.num_negatives > 0 or mixture, "data.num_negatives",
             f"must be > 0 for colbert.loss {self.colbert.loss} (the group each query is distilled over)"),
            (self.model.head_dim >= 0, "model.head_dim", "must be >= 0"),
            (self.model.max_length >= 0, "model.max_length", "must be >= 0 (0: the directory's max_seq_length)"),
            (not self.model.max_length or self.task in ("dense", "distill"), "model.max_length",
             "is for tasks dense and distill; colbert and reranker set their lengths in colbert.* / reranker.*"),
            (all(d > 0 for d in self.model.matryoshka_dims), "model.matryoshka_dims", "must be positive"),
            (len(set(self.model.matryoshka_dims)) == len(self.model.matryoshka_dims), "model.matryoshka_dims",
             "must not repeat"),
            (self.model.matryoshka_mode in ("heads", "slice"), "model.matryoshka_mode", "must be heads or slice"),
            (not self.model.matryoshka_dims or self.task in ("dense", "distill"), "model.matryoshka_dims",
             "is for tasks dense and distill (a ColBERT or reranker model has no pooled vector to cut)"),
            (not self.model.matryoshka_weights or len(self.model.matryoshka_weights) == len(
                self.model.matryoshka_dims), "model.matryoshka_weights", "needs one weight per model.matryoshka_dims"),
            (all(w >= 0 for w in self.model.matryoshka_weights), "model.matryoshka_weights", "must be >= 0"),
            (self.model.head_init in ("normal", "orthogonal", "principal"), "model.head_init",
             "must be normal, orthogonal or principal"),
            (self.model.head_init != "principal" or self.task == "distill", "model.head_init",
             "principal needs task distill (its directions come from data.train's texts)"),
            (not self.init_fresh or bool(self.init_from), "init_fresh",
             "needs init_from (without it every parameter starts fresh already)"),
            (self.model.lora_rank >= 0, "model.lora_rank", "must be >= 0"),
            (self.reranker.in_batch_negatives >= 0, "reranker.in_batch_negatives", "must be >= 0"),
            (not self.reranker.in_batch_negatives or self.reranker.loss != "distill",
             "reranker.in_batch_negatives", "has no teacher scores: use it with listwise, bce, mse or ranknet"),
            (not self.reranker.in_batch_negatives or self.batch_size >= 2, "reranker.in_batch_negatives",
             "needs batch_size >= 2 (other queries to draw from)"),
            (self.model.lora_alpha > 0, "model.lora_alpha", "must be > 0"),
            (self.task != "distill" or bool(self.distill.teacher_vectors) != bool(self.distill.teachers),
             "distill.teacher_vectors", "or distill.teachers (exactly one) must be set for task distill"),
            (not self.distill.teacher_weights or len(self.distill.teacher_weights) == num_teachers,
             "distill.teacher_weights", f"needs one weight per teacher, and there are {num_teachers}"),
            (all(w > 0 for w in self.distill.teacher_weights), "distill.teacher_weights", "must be positive"),
            (self.distill.neighbour_group >= 0 and (not self.distill.neighbour_group or (
                self.distill.teacher_vectors and self.batch_size % self.distill.neighbour_group == 0)),
             "distill.neighbour_group", "must be >= 0, needs distill.teacher_vectors, and must divide batch_size "
             "(each batch is whole groups)"),
            (not self.distill.neighbour_group or (self.distill.neighbour_window > 0
                                                  and self.distill.neighbour_window % self.batch_size == 0),
             "distill.neighbour_window", "must be a positive multiple of batch_size (no batch spans two windows)"),
            *[(_get(self, f"distill.{key}") >= 0, f"distill.{key}", "must be >= 0 (a negative weight maximizes "
               "its term)") for key in ("cosine_weight", "similarity_weight", "relative_weight", "l2_weight",
                                        "listwise_weight", "margin")],
            (self.distill.relative_chunk > 0, "distill.relative_chunk", "must be positive"),
            (self.distill.listwise_temperature > 0, "distill.listwise_temperature", "must be positive"),
            (self.grad_cache_chunk >= 0 and (not self.grad_cache_chunk or self.batch_size % self.grad_cache_chunk == 0),
             "grad_cache_chunk", "must be >= 0 and divide batch_size"),
        ]
        for ok, key, message in checks:
            if not ok:
                raise InputError(f"{key} {message} (got {_get(self, key)!r})", source, field=key)
        validate_sources(self, source, scored=(self.task == "dense" and self.loss.name in SCORE_LOSSES) or (
            self.task == "colbert" and self.colbert.loss != "contrastive"))

    @property
    def has_dev(self) -> bool:
        """Whether there is a dev split to evaluate (data/dev_split.py says which queries)."""
        return bool(self.data.dev_queries or self.eval.dev_data or self.eval.dev_sts)

    @property
    def selects_on_dev(self) -> bool:
        """Whether periodic evaluations and the best step use the dev split (the test side then waits for the end)."""
        return self.eval.select_on == "dev" or (not self.eval.select_on and self.has_dev)

    @property
    def one_source_batches(self) -> bool:
        """Whether each batch of a mixture comes from one source: as data.batch_from_one_source says, by default
        for the tasks whose loss contrasts a batch's rows with each other."""
        chosen = self.data.batch_from_one_source
        return self.task in ("dense", "colbert") if chosen is None else chosen


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _coerce(value: Any, annotation: Any, key: str, source: str) -> Any:
    """Check and convert one value to its field type; strings from the command line are parsed as YAML scalars."""
    origin = typing.get_origin(annotation)
    if origin is list:
        (item,) = typing.get_args(annotation)
        if isinstance(value, str):  # command line: "512,256" or "[512, 256]" or "" (empty list)
            text = value.strip().strip("[]")
            value = [v.strip() for v in text.split(",") if v.strip()]
        if not isinstance(value, list):
            raise InputError(f"expected a list, got {value!r}", source, field=key)
        return [_coerce(v, item, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        last_error = None
        for option in typing.get_args(annotation):
            if option is type(None) and value is None:
                return None
            try:
                return _coerce(value, option, key, source)
            except InputError as e:
                last_error = e
        raise last_error
    if dataclasses.is_dataclass(annotation):  # a mapping of that dataclass's fields, or a path alone
        if isinstance(value, str):
            value = {"path": value}
        if not isinstance(value, dict):
            raise InputError(f"expected a mapping, got {value!r}", source, field=key)
        obj = annotation()
        _merge(obj, value, source, key + ".")
        return obj
    if isinstance(value, str) and annotation in (int, float):
        try:  # python's parser: YAML 1.1 reads "1e-3" as a string
            value = int(value) if annotation is int else float(value)
        except ValueError:
            pass
    elif isinstance(value, str) and annotation is bool:
        value = yaml.safe_load(value) if value.strip() else value
    if annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise InputError(f"must be a finite number, got {value!r}", source, field=key)
            return float(value)
    elif annotation is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    raise InputError(f"expected {getattr(annotation, '__name__', annotation)}, got {value!r}", source, field=key)


def _merge(obj: Any, values: dict[str, Any], source: str, prefix: str = "") -> None:
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(prefix + c for c in close)}?" if close else \
                f"; valid keys: {', '.join(prefix + n for n in names)}"
            raise InputError(f"unknown config key {dotted!r}{hint}", source, field=dotted)
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise InputError(f"{dotted} must be a mapping", source, field=dotted)
            _merge(current, value, source, dotted + ".")
        else:
            setattr(obj, key, _coerce(value, hints[key], dotted, source))


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """['a.b=1', 'c=x'] → {'a': {'b': '1'}, 'c': 'x'} (values are parsed against the schema later)."""
    nested: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise InputError(f"override {item!r} is not key=value", "command line")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return nested


def read_config_file(path: str | os.PathLike) -> list[tuple[UPath, dict[str, Any]]]:
    """The YAML mappings a config file stands for, base first: a file may name another with `base: other.yaml`
    (relative to itself), whose values it then overrides key by key, so related configs (the stages of a recipe)
    state only what differs. Each mapping comes with its file, so an error names the file that holds the key."""
    chain: list[tuple[UPath, dict[str, Any]]] = []
    p = absolute(path)  # local or gs://
    while True:
        check_storage(p, field="base" if chain else None)
        if not p.exists():
            raise InputError("config file not found", p, field="base" if chain else None)
        if any(str(p) == str(q) for q, _ in chain):
            raise InputError("config is its own base (a loop of base: keys)", p, field="base")
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            line = getattr(getattr(e, "problem_mark", None), "line", None)
            raise InputError(f"invalid YAML: {getattr(e, 'problem', e)}", p, None if line is None else line + 1)
        if not isinstance(raw, dict):
            raise InputError("top level must be a mapping", p)
        base = raw.pop("base", None)
        chain.append((p, raw))
        if base is None:
            return chain[::-1]
        if not isinstance(base, str) or not base:
            raise InputError(f"base must be the path of another config file, got {base!r}", p, field="base")
        p = upath(base) if "://" in base else absolute(_join(str(p.parent), base))


def _join(folder: str, relative: str) -> str:
    """`relative` (with any ..) resolved against a local folder or a gs:// one."""
    scheme, sep, rest = folder.partition("://")
    if sep:
        return f"{scheme}://{posixpath.normpath(posixpath.join(rest, relative))}"
    return os.path.normpath(os.path.join(folder, relative))


def load_config(path: str | os.PathLike | None, overrides: list[str] = ()) -> TrainConfig:
    cfg = TrainConfig()
    if path is not None:
        for file, raw in read_config_file(path):
            _merge(cfg, raw, str(file))
    _merge(cfg, parse_overrides(list(overrides)), "command line")
    cfg.validate(str(path) if path else "command line")
    return cfg


# The settings that name a file or directory (each may be local or gs://).
PATH_KEYS = ("output_dir", "init_from", "model.path", "data.train", "distill.teacher_vectors", "distill.teachers",
             "reranker.first_stage", "eval.data", "eval.sts", "eval.dev_data", "eval.dev_sts")


def config_paths(cfg: TrainConfig) -> list[tuple[str, str]]:
    """(dotted key, path) for every path the config names."""
    out = []
    for key in PATH_KEYS:
        value = cfg
        for part in key.split("."):
            value = getattr(value, part)
        values = value if isinstance(value, list) else [value]
        out += [(key, v.path if isinstance(v, TrainSource) else v) for v in values if v]
    return out


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


# Settings a resumed run may change freely: where and how often it writes, how it is evaluated, the device mesh
# (a checkpoint restores onto any), how long it runs (extending a run is what resuming is for), and what only a
# fresh start reads.
RESUMABLE_KEYS = ("output_dir", "shared_filesystem", "save_every", "save_every_minutes", "eval_every", "log_every",
                  "keep_checkpoints", "keep_best", "max_bad_steps", "resume_with_changes", "init_from", "init_fresh",
                  "steps", "epochs", "mesh.", "eval.")


def changed_settings(saved: dict[str, Any], current: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(dotted key, saved value, current value) for each setting that differs and alters what the run computes."""
    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    # a key the saved config lacks (a run saved before the key existed) had its default
    a, b = {**flat(config_to_dict(TrainConfig())), **flat(saved)}, flat(current)
    keys = sorted(set(a) | set(b))
    return [(k, a.get(k), b.get(k)) for k in keys
            if a.get(k) != b.get(k) and not any(k == r or (r.endswith(".") and k.startswith(r))
                                                 for r in RESUMABLE_KEYS)]
