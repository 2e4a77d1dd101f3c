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
from jaxretrieval.config import TrainConfig
from jaxretrieval.data.pipeline import DenseBatchSource, TokenTable
from jaxretrieval.data.prepared import is_prepared, prepared_batch_source
from jaxretrieval.data.train_pairs import read_train_pairs
from jaxretrieval.errors import InputError, require_one_batch
from jaxretrieval.losses.contrastive import infonce_loss
from jaxretrieval.losses.listwise import listwise_kl_loss
from jaxretrieval.models.embedder import Embedder


def make_dense_source(cfg: TrainConfig, loaded: LoadedEmbedder) -> DenseBatchSource:
    """In-memory source over a jsonl file or BEIR directory, or this process's shards of a prepared directory."""
    tok = loaded.tokenizer
    if is_prepared(cfg.data.train):
        return prepared_batch_source(cfg.data.train, tok, cfg.batch_size, cfg.data.num_negatives, cfg.seed,
                                     cfg.model.max_query_length, cfg.model.max_doc_length, jax.process_index(),
                                     jax.process_count())
    pairs = read_train_pairs(cfg.data.train, cfg.data.split)
    if cfg.loss.name == "kl" and pairs.positive_scores is not None:
        pairs = pairs.with_negatives_only()
    require_one_batch(len(pairs), cfg.batch_size, "training examples", pairs.source)
    per_octave = cfg.data.length_buckets_per_octave
    queries = TokenTable.build(tok, pairs.query_texts, "query", min(cfg.model.max_query_length, tok.max_length),
                               per_octave)
    docs = TokenTable.build(tok, pairs.doc_texts, "doc", min(cfg.model.max_doc_length, tok.max_length), per_octave)
    if cfg.loss.name == "kl" and pairs.positive_scores is None:
        raise InputError("loss.name kl needs pos_scores and neg_scores in every record (jaxretrieval score adds "
                         "them)", pairs.source, field="pos_scores")
    return DenseBatchSource(pairs, queries, docs, cfg.batch_size, cfg.data.num_negatives, cfg.seed, tok.pad_id,
                            jax.process_index(), jax.process_count(), with_scores=cfg.loss.name == "kl")


@dataclasses.dataclass
class DenseTask:
    cfg: TrainConfig
    source: DenseBatchSource
    teacher_params: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def build(cls, cfg: TrainConfig, loaded: LoadedEmbedder) -> "DenseTask":
        return cls(cfg, make_dense_source(cfg, loaded))

    def streams(self, batch) -> dict[str, dict[str, jax.Array]]:
        length = batch["pos_ids"].shape[-1]
        return {"query": {"ids": batch["query_ids"], "mask": batch["query_mask"]},
                "doc": {"ids": jnp.concatenate([batch["pos_ids"], batch["neg_ids"].reshape(-1, length)]),
                        "mask": jnp.concatenate([batch["pos_mask"], batch["neg_mask"].reshape(-1, length)])}}

    @staticmethod
    def encode(model: Embedder, name: str, inputs: dict[str, jax.Array], key) -> jax.Array:
        return model(inputs["ids"], inputs["mask"], dropout_key=key)

    def loss_from_reps(self, reps: dict[str, jax.Array], batch, teacher_params=None) -> tuple[jax.Array, dict]:
        """batch: query_ids/query_mask int32[B, Lq], pos_ids/pos_mask int32[B, Ld], neg_ids/neg_mask
        int32[B, N, Ld], query_text int32[B], pos_doc int32[B], neg_doc int32[B, N] (text ids for duplicate
        masks), and with loss.name kl pos_score float32[B], neg_scores float32[B, N]; reps: query float32[B, D],
        doc float32[B(1 + N), D] (positives, then each query's negatives)."""
        c = self.cfg.loss
        if c.name == "kl":  # distillation of teacher scores over each query's own [positive, negatives]
            q, d = reps["query"], reps["doc"]
            b, n = batch["neg_doc"].shape
            group = jnp.concatenate([d[:b, None], d[b:].reshape(b, n, -1)], axis=1)  # [B, 1 + N, D]
            student = jnp.einsum("bd,bgd->bg", q, group) / c.temperature
            teacher = jnp.concatenate([batch["pos_score"][:, None], batch["neg_scores"]], axis=1)
            return listwise_kl_loss(student, teacher), {}
        text_ids = jnp.concatenate([batch["pos_doc"], batch["neg_doc"].reshape(-1)])
        return infonce_loss(reps["query"], reps["doc"], text_ids, c.temperature, c.symmetric, batch["query_text"]), {}
