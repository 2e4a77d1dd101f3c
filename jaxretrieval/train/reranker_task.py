"""The reranker training task: each query's group (a sampled positive first, then group_size − 1 negatives)
tokenized as (query, document) pairs in the input pipeline, scored by the cross-encoder, and one of the ranking
losses: listwise CE, pointwise BCE / MSE on labels, RankNet, or per-group KL to teacher scores.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from jaxretrieval.bundles import LoadedReranker
from jaxretrieval.config import TrainConfig
from jaxretrieval.data.pair_groups import PairGroupSource
from jaxretrieval.data.rerank_data import read_rerank_data
from jaxretrieval.errors import InputError, require_one_batch
from jaxretrieval.losses.listwise import listwise_kl_loss
from jaxretrieval.losses.ranking import (
    listwise_ce_loss,
    pointwise_bce_loss,
    pointwise_mse_loss,
    ranknet_loss,
)
from jaxretrieval.models.reranker import CrossEncoder


@dataclasses.dataclass
class RerankerTask:
    cfg: TrainConfig
    source: PairGroupSource
    teacher_params: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def build(cls, cfg: TrainConfig, loaded: LoadedReranker) -> RerankerTask:
        r = cfg.reranker
        pairs = read_rerank_data(cfg.data.train, r.label_min, r.label_max, cfg.data.split)
        scored = pairs.positive_scores is not None
        if r.loss in ("bce", "mse", "ranknet", "distill") and not scored:
            raise InputError(f"reranker.loss {r.loss} needs labels or teacher scores (a labeled format, or "
                             f"pos_scores/neg_scores)", pairs.source, field="reranker.loss")
        use_scores = scored and r.loss != "listwise"
        if use_scores and r.group_size > 1:
            pairs = pairs.with_negatives_only()
        require_one_batch(len(pairs), cfg.batch_size, "queries", pairs.source)
        return cls(cfg, PairGroupSource(pairs, loaded.tokenizer, cfg.batch_size, r.group_size, cfg.seed,
                                        use_scores, r.in_batch_negatives, jax.process_index(),
                                        jax.process_count()))

    def streams(self, batch) -> dict[str, dict[str, jax.Array]]:
        """One stream of (query, document) pairs, the groups flattened: [B·G, L]."""
        b, g, length = batch["ids"].shape
        return {"pairs": {k: batch[k].reshape(b * g, length) for k in ("ids", "mask", "types")}}

    @staticmethod
    def encode(model: CrossEncoder, name: str, inputs: dict[str, jax.Array], key) -> jax.Array:
        return model(inputs["ids"], inputs["mask"], inputs["types"], key)

    def loss_from_reps(self, reps, batch, teacher_params=None) -> tuple[jax.Array, dict[str, jax.Array]]:
        """reps: pairs float32[B·G] relevance logits, in batch["ids"]'s [B, G] order."""
        r = self.cfg.reranker
        scores = reps["pairs"].reshape(batch["ids"].shape[:2])
        if r.loss == "listwise":
            return listwise_ce_loss(scores, temperature=r.temperature), {}
        target = batch["scores"]
        if r.loss == "distill":
            return listwise_kl_loss(scores, target, r.temperature,
                                    normalize_teacher=r.normalize_teacher_scores), {}
        loss_fn = {"bce": pointwise_bce_loss, "mse": pointwise_mse_loss, "ranknet": ranknet_loss}[r.loss]
        return loss_fn(scores, target), {}
