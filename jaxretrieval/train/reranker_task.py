"""The reranker training task: each query's group (a sampled positive first, then group_size − 1 negatives)
tokenized as (query, document) pairs in the input pipeline, scored by the cross-encoder, and one of the ranking
losses: listwise CE, pointwise BCE / MSE on labels, RankNet, or per-group KL to teacher scores.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxretrieval.bundles import LoadedReranker
from jaxretrieval.config import TrainConfig
from jaxretrieval.data.dev_split import held_out
from jaxretrieval.data.pair_groups import PairGroupSource
from jaxretrieval.data.rerank_data import is_labeled_jsonl, read_rerank_data
from jaxretrieval.data.shard_batches import PairTextBatches
from jaxretrieval.data.shard_format import is_prepared
from jaxretrieval.data.shard_stream import ShardSource, open_shards
from jaxretrieval.data.shard_writer import prepare_pairs
from jaxretrieval.data.tokenize import length_buckets
from jaxretrieval.data.train_pairs import iter_train_records, pair_records
from jaxretrieval.errors import InputError, require_one_batch
from jaxretrieval.files import upath
from jaxretrieval.losses.listwise import listwise_kl_loss
from jaxretrieval.losses.ranking import (
    listwise_ce_loss,
    pointwise_bce_loss,
    pointwise_mse_loss,
    ranknet_loss,
)
from jaxretrieval.models.embedder import PACKED_INPUTS, Packing
from jaxretrieval.models.reranker import CrossEncoder


def _prepared_source(cfg: TrainConfig, loaded: LoadedReranker, needs_scores: bool) -> ShardSource:
    """This process's stream of prepared pair texts, padded per batch to its length bucket with one process, to
    the tokenizer's max_length with several."""
    r = cfg.reranker
    tok = loaded.tokenizer
    buckets = (tok.max_length,) if jax.process_count() > 1 else length_buckets(tok.max_length, 1)

    def assemble(manifest: dict) -> PairTextBatches:
        if needs_scores and not manifest["scored"]:
            raise InputError(f"reranker.loss {r.loss} needs labels or teacher scores; prepare scored data",
                             cfg.data.train, field="reranker.loss")
        return PairTextBatches(tok, r.group_size, r.in_batch_negatives, needs_scores,
                               cfg.seed, jax.process_index(), buckets, cfg.data.train)

    only_own = needs_scores and r.group_size > 1  # score losses need each query's own scored negatives
    return open_shards(cfg.data.train, "pair_texts", cfg.task, None, {}, cfg.batch_size, cfg.seed,
                       cfg.data.shuffle_buffer, jax.process_index(), jax.process_count(), assemble, only_own)


@dataclasses.dataclass
class RerankerTask:
    cfg: TrainConfig
    source: PairGroupSource | ShardSource
    teacher_params: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def build(cls, cfg: TrainConfig, loaded: LoadedReranker) -> RerankerTask:
        r = cfg.reranker
        needs_scores = r.loss in ("bce", "mse", "ranknet", "distill")
        if is_prepared(cfg.data.train):
            if cfg.data.packing:
                raise InputError("data.packing packs in-memory data; prepared shards are read as padded batches",
                                 cfg.data.train, field="data.packing")
            return cls(cfg, _prepared_source(cfg, loaded, needs_scores))
        pairs = held_out(cfg).drop_from_pairs(read_rerank_data(cfg.data.train, r.label_min, r.label_max,
                                                                cfg.data.split))
        scored = pairs.positive_scores is not None
        if needs_scores and not scored:
            raise InputError(f"reranker.loss {r.loss} needs labels or teacher scores (a labeled format, or "
                             f"pos_scores/neg_scores)", pairs.source, field="reranker.loss")
        use_scores = scored and r.loss != "listwise"
        if use_scores and r.group_size > 1:
            pairs = pairs.with_negatives_only()
        require_one_batch(len(pairs), cfg.batch_size, "queries", pairs.source)
        return cls(cfg, PairGroupSource(pairs, loaded.tokenizer, cfg.batch_size, r.group_size, cfg.seed,
                                        use_scores, r.in_batch_negatives, jax.process_index(),
                                        jax.process_count(), packing=cfg.data.packing,
                                        row_multiple=jax.local_device_count()))

    @staticmethod
    def prepare(cfg: TrainConfig, loaded: LoadedReranker, out: str, num_shards: int, overwrite: bool) -> dict:
        """{query, pos, neg[, scores]} records as texts: a cross-encoder tokenizes query and document together, per
        batch. Labeled formats (data/rerank_data.py) are read whole first; jsonl is streamed."""
        r = cfg.reranker
        source = upath(cfg.data.train)
        if source.suffix == ".jsonl" and not is_labeled_jsonl(source):
            records = iter_train_records(source)
        else:
            records = pair_records(read_rerank_data(cfg.data.train, r.label_min, r.label_max, cfg.data.split))
        return prepare_pairs(records, out, num_shards, None, str(cfg.data.train), overwrite, seed=cfg.seed)

    def streams(self, batch) -> dict[str, dict[str, jax.Array]]:
        """One stream of (query, document) pairs, the groups flattened: [B·G, L] (or packed rows: data.packing)."""
        if "segments" in batch:
            return {"pairs": {k: batch[k] for k in (*PACKED_INPUTS, "types")}}
        b, g, length = batch["ids"].shape
        return {"pairs": {k: batch[k].reshape(b * g, length) for k in ("ids", "mask", "types")}}

    @staticmethod
    def encode(model: CrossEncoder, name: str, inputs: dict[str, jax.Array], key) -> jax.Array:
        if "segments" in inputs:
            packing = Packing(inputs["segments"], inputs["token_text"], inputs["first"], inputs["last"])
            mask = (packing.segment_ids > 0).astype(jnp.int32)
            return model(inputs["ids"], mask, inputs["types"], key, packing=packing)
        return model(inputs["ids"], inputs["mask"], inputs["types"], key)

    def loss_from_reps(self, reps, batch, teacher_params=None) -> tuple[jax.Array, dict[str, jax.Array]]:
        """reps: pairs float32[B·G] relevance logits, in batch["ids"]'s [B, G] order."""
        r = self.cfg.reranker
        groups = batch["pair_slots"].shape if "pair_slots" in batch else batch["ids"].shape[:2]
        scores = reps["pairs"].reshape(groups)
        if r.loss == "listwise":
            return listwise_ce_loss(scores, temperature=r.temperature), {}
        target = batch["scores"]
        if r.loss == "distill":
            return listwise_kl_loss(scores, target, r.temperature,
                                    normalize_teacher=r.normalize_teacher_scores), {}
        loss_fn = {"bce": pointwise_bce_loss, "mse": pointwise_mse_loss, "ranknet": ranknet_loss}[r.loss]
        return loss_fn(scores, target), {}
