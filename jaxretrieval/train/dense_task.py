"""The dense-embedder training task: {query, pos, neg} batches, queries and documents encoded as two streams, and
InfoNCE over the global batch (in-batch and hard negatives, duplicate documents masked), or per-query KL to teacher
scores (`loss.name: kl`). The interface every task follows is in train/tasks.py.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxretrieval.bundles import LoadedEmbedder
from jaxretrieval.config import SCORE_LOSSES, TrainConfig, matryoshka_weight
from jaxretrieval.data.pipeline import DenseBatchSource, TokenTable
from jaxretrieval.data.shard_batches import PairTokenBatches
from jaxretrieval.data.shard_format import is_prepared, require_unprompted, tokenizer_fingerprint
from jaxretrieval.data.shard_stream import ShardSource, open_shards
from jaxretrieval.data.shard_writer import Tokenization, prepare_pairs
from jaxretrieval.data.tokenize import length_buckets
from jaxretrieval.data.dev_split import held_out
from jaxretrieval.data.train_pairs import iter_train_records, read_train_pairs
from jaxretrieval.errors import InputError, require_one_batch
from jaxretrieval.losses.contrastive import infonce_loss
from jaxretrieval.losses.listwise import listwise_kl_loss, margin_mse_loss
from jaxretrieval.models.embedder import PACKED_INPUTS, Embedder, embed_inputs


def dense_tokenization(cfg: TrainConfig, loaded: LoadedEmbedder) -> Tokenization:
    """The token ids the dense task trains on, for `prepare` and for checking prepared data against the run."""
    tok = loaded.tokenizer
    q_len, d_len = min(cfg.model.max_query_length, tok.max_length), min(cfg.model.max_doc_length, tok.max_length)
    return Tokenization(lambda texts, kind: tok.tokenize(texts, kind, q_len if kind == "query" else d_len)["input_ids"],
                        tokenizer_fingerprint(tok), {"max_query_length": q_len, "max_doc_length": d_len})


def prepared_dense_source(cfg: TrainConfig, loaded: LoadedEmbedder) -> ShardSource:
    """This process's stream of a prepared directory: padded per batch to its length bucket with one process, to
    the prepared maximum lengths with several (data/shard_stream.py)."""
    tokens = dense_tokenization(cfg, loaded)
    kl = cfg.loss.name in SCORE_LOSSES
    q_len, d_len = tokens.settings["max_query_length"], tokens.settings["max_doc_length"]
    per_octave = cfg.data.length_buckets_per_octave
    buckets = (lambda n: (n,)) if jax.process_count() > 1 else (lambda n: length_buckets(n, per_octave))

    def assemble(manifest: dict) -> PairTokenBatches:
        if kl and not manifest["scored"]:
            raise InputError(f"loss.name {cfg.loss.name} needs pos_scores and neg_scores in every record "
                             f"(jaxretrieval score adds them); prepare scored data", cfg.data.train, field="pos_scores")
        return PairTokenBatches(cfg.data.num_negatives, cfg.seed, jax.process_index(), loaded.tokenizer.pad_id,
                                loaded.tokenizer.pad_id, buckets(q_len), buckets(d_len), kl, cfg.data.train)

    return open_shards(cfg.data.train, "pair_tokens", cfg.task, tokens.fingerprint, tokens.settings, cfg.batch_size,
                       cfg.seed, cfg.data.shuffle_buffer, jax.process_index(), jax.process_count(), assemble,
                       only_own_negatives=kl)


def make_dense_source(cfg: TrainConfig, loaded: LoadedEmbedder) -> DenseBatchSource | ShardSource:
    """In-memory source over a jsonl file or BEIR directory, or this process's stream of a prepared directory."""
    if is_prepared(cfg.data.train):
        if cfg.data.packing:
            raise InputError("data.packing packs in-memory data; prepared shards are read as padded batches",
                             cfg.data.train, field="data.packing")
        require_unprompted(cfg.data.train, cfg.data.prompt, cfg.data.min_score)
        return prepared_dense_source(cfg, loaded)
    tok = loaded.tokenizer
    pairs = held_out(cfg).drop_from_pairs(
        read_train_pairs(cfg.data.train, cfg.data.split, cfg.data.prompt, cfg.data.min_score))
    scored = cfg.loss.name in SCORE_LOSSES
    if scored and pairs.positive_scores is not None:
        pairs = pairs.with_negatives_only()
    require_one_batch(len(pairs), cfg.batch_size, "training examples", pairs.source)
    per_octave = cfg.data.length_buckets_per_octave
    queries = TokenTable.build(tok, pairs.query_texts, "query", min(cfg.model.max_query_length, tok.max_length),
                               per_octave)
    docs = TokenTable.build(tok, pairs.doc_texts, "doc", min(cfg.model.max_doc_length, tok.max_length), per_octave)
    if scored and pairs.positive_scores is None:
        raise InputError(f"loss.name {cfg.loss.name} needs pos_scores and neg_scores in every record (jaxretrieval "
                         f"score adds them)", pairs.source, field="pos_scores")
    return DenseBatchSource(pairs, queries, docs, cfg.batch_size, cfg.data.num_negatives, cfg.seed, tok.pad_id,
                            jax.process_index(), jax.process_count(), with_scores=scored, packing=cfg.data.packing,
                            row_multiple=jax.local_device_count())


@dataclasses.dataclass
class DenseTask:
    cfg: TrainConfig
    source: DenseBatchSource | ShardSource
    teacher_params: dict[str, Any] = dataclasses.field(default_factory=dict)
    main_dim: int = 0  # the model's output width; the other keys of Matryoshka reps are its smaller dims

    @classmethod
    def build(cls, cfg: TrainConfig, loaded: LoadedEmbedder) -> "DenseTask":
        return cls(cfg, make_dense_source(cfg, loaded), main_dim=loaded.model.dim)

    @staticmethod
    def prepare(cfg: TrainConfig, loaded: LoadedEmbedder, out: str, num_shards: int, overwrite: bool) -> dict:
        """data.train tokenized as this task trains on it, streamed into shards (data/shard_writer.py)."""
        return prepare_pairs(iter_train_records(cfg.data.train, cfg.data.split, cfg.data.prompt,
                                                cfg.data.min_score), out, num_shards,
                             dense_tokenization(cfg, loaded), str(cfg.data.train), overwrite, seed=cfg.seed)

    def streams(self, batch) -> dict[str, dict[str, jax.Array]]:
        if "query_segments" in batch:  # packed rows (data.packing)
            return {name: {k: batch[f"{name}_{k}"] for k in PACKED_INPUTS} for name in ("query", "doc")}
        length = batch["pos_ids"].shape[-1]
        return {"query": {"ids": batch["query_ids"], "mask": batch["query_mask"]},
                "doc": {"ids": jnp.concatenate([batch["pos_ids"], batch["neg_ids"].reshape(-1, length)]),
                        "mask": jnp.concatenate([batch["pos_mask"], batch["neg_mask"].reshape(-1, length)])}}

    @staticmethod
    def encode(model: Embedder, name: str, inputs: dict[str, jax.Array], key) -> jax.Array | dict[int, jax.Array]:
        """The main output float32[texts, D]; with Matryoshka dims, {dim: float32[texts, dim]} from one pass."""
        return embed_inputs(model, inputs, key, all_dims=bool(model.spec.matryoshka_dims))

    def loss_from_reps(self, reps: dict, batch, teacher_params=None) -> tuple[jax.Array, dict]:
        """batch: query_ids/query_mask int32[B, Lq], pos_ids/pos_mask int32[B, Ld], neg_ids/neg_mask
        int32[B, N, Ld], query_text int32[B], pos_doc int32[B], neg_doc int32[B, N] (text ids for duplicate
        masks), and with a score loss pos_score float32[B], neg_scores float32[B, N]; reps: query float32[B, D],
        doc float32[B(1 + N), D] (positives, then each query's negatives), or {dim: those} with Matryoshka dims:
        then the loss at the main output plus each dim's loss times its weight (sentence-transformers'
        MatryoshkaLoss), each dim's own loss logged as d{dim}/loss."""
        q, d = reps["query"], reps["doc"]
        if not isinstance(q, dict):
            return self._loss(q, d, batch), {}
        total, metrics = self._loss(q[self.main_dim], d[self.main_dim], batch), {}
        for dim in sorted(set(q) - {self.main_dim}, reverse=True):
            part = self._loss(q[dim], d[dim], batch)
            total = total + matryoshka_weight(self.cfg, dim) * part
            metrics[f"d{dim}/loss"] = part
        return total, metrics

    def _loss(self, q: jax.Array, d: jax.Array, batch) -> jax.Array:
        c = self.cfg.loss
        if c.name in SCORE_LOSSES:  # distillation of teacher scores over each query's own [positive, negatives]
            b, n = batch["neg_doc"].shape
            group = jnp.concatenate([d[:b, None], d[b:].reshape(b, n, -1)], axis=1)  # [B, 1 + N, D]
            student = jnp.einsum("bd,bgd->bg", q, group)
            teacher = jnp.concatenate([batch["pos_score"][:, None], batch["neg_scores"]], axis=1)
            if c.name == "margin_mse":  # raw dot products: the margins are fitted on the teacher's own scale
                return margin_mse_loss(student, teacher)
            return listwise_kl_loss(student / c.temperature, teacher)
        text_ids = jnp.concatenate([batch["pos_doc"], batch["neg_doc"].reshape(-1)])
        return infonce_loss(q, d, text_ids, c.temperature, c.symmetric, batch["query_text"])
