"""The ColBERT training task: {query, pos, neg} batches tokenized the ColBERT way (markers, query expansion,
skiplist) and MaxSim losses — contrastive over every positive and hard negative of the global batch, or KL
distillation of each query's own group [positive, negatives] towards the file's teacher scores.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxretrieval.bundles import LoadedColBERT
from jaxretrieval.config import TrainConfig
from jaxretrieval.data.pipeline import DenseBatchSource
from jaxretrieval.data.shard_batches import PairTokenBatches
from jaxretrieval.data.shard_format import is_prepared, require_unprompted, tokenizer_fingerprint
from jaxretrieval.data.shard_stream import ShardSource, open_shards
from jaxretrieval.data.shard_writer import Tokenization, prepare_pairs
from jaxretrieval.data.tokenize import length_buckets
from jaxretrieval.data.dev_split import held_out
from jaxretrieval.data.train_pairs import iter_train_records, read_train_pairs
from jaxretrieval.errors import InputError, require_one_batch
from jaxretrieval.losses.contrastive import infonce_from_scores
from jaxretrieval.losses.listwise import listwise_kl_loss, margin_mse_loss
from jaxretrieval.losses.maxsim import maxsim_dense, maxsim_scores
from jaxretrieval.models.colbert import ColBERT


def colbert_tokenization(loaded: LoadedColBERT) -> Tokenization:
    """ColBERT's token ids (markers, truncation), for `prepare` and for checking prepared data against the run."""
    tok = loaded.tokenizer
    settings = {"max_query_length": tok.query_length, "max_doc_length": tok.doc_length}
    markers = {"markers": tok.marker_tokens, **settings}
    return Tokenization(tok.token_ids, tokenizer_fingerprint(tok.text, colbert=markers), settings)


def colbert_source(cfg: TrainConfig, loaded: LoadedColBERT) -> DenseBatchSource | ShardSource:
    tok = loaded.tokenizer
    distill = cfg.colbert.loss != "contrastive"  # distill, margin_mse: the file's teacher scores
    per_octave = cfg.data.length_buckets_per_octave
    if is_prepared(cfg.data.train):
        if cfg.data.packing:
            raise InputError("data.packing packs in-memory data; prepared shards are read as padded batches",
                             cfg.data.train, field="data.packing")
        require_unprompted(cfg.data.train, cfg.data.prompt, cfg.data.min_score)
        tokens = colbert_tokenization(loaded)
        doc_buckets = (tok.doc_length,) if jax.process_count() > 1 else length_buckets(tok.doc_length, per_octave)

        def assemble(manifest: dict) -> PairTokenBatches:
            if distill and not manifest["scored"]:
                raise InputError(f"colbert.loss {cfg.colbert.loss} needs pos_scores and neg_scores in every record; "
                                 f"prepare scored data", cfg.data.train, field="pos_scores")
            return PairTokenBatches(cfg.data.num_negatives, cfg.seed, jax.process_index(), tok.text.pad_id,
                                    tok.expansion_id, (tok.query_length,), doc_buckets, distill, cfg.data.train)

        return open_shards(cfg.data.train, "pair_tokens", cfg.task, tokens.fingerprint, tokens.settings,
                           cfg.batch_size, cfg.seed, cfg.data.shuffle_buffer, jax.process_index(),
                           jax.process_count(), assemble, only_own_negatives=distill)
    pairs = held_out(cfg).drop_from_pairs(
        read_train_pairs(cfg.data.train, cfg.data.split, cfg.data.prompt, cfg.data.min_score))
    if distill and pairs.positive_scores is None:
        raise InputError(f"colbert.loss {cfg.colbert.loss} needs pos_scores and neg_scores in every record "
                         f"(jaxretrieval score adds them)", pairs.source, field="pos_scores")
    require_one_batch(len(pairs), cfg.batch_size, "training examples", pairs.source)
    queries, docs = tok.table(pairs.query_texts, "query", per_octave), tok.table(pairs.doc_texts, "doc", per_octave)
    return DenseBatchSource(pairs, queries, docs, cfg.batch_size, cfg.data.num_negatives, cfg.seed,
                            tok.text.pad_id, jax.process_index(), jax.process_count(),
                            fixed_lengths=(tok.query_length, None), query_pad_id=tok.expansion_id,
                            with_scores=distill, packing=cfg.data.packing, row_multiple=jax.local_device_count(),
                            pack_queries=False)


@dataclasses.dataclass
class ColBERTTask:
    cfg: TrainConfig
    source: DenseBatchSource | ShardSource
    attend_to_expansion: bool
    skiplist: tuple[int, ...]
    teacher_params: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def build(cls, cfg: TrainConfig, loaded: LoadedColBERT) -> "ColBERTTask":
        tok = loaded.tokenizer
        return cls(cfg, colbert_source(cfg, loaded), tok.attend_to_expansion_tokens, tok.skiplist_ids)

    @staticmethod
    def prepare(cfg: TrainConfig, loaded: LoadedColBERT, out: str, num_shards: int, overwrite: bool) -> dict:
        return prepare_pairs(iter_train_records(cfg.data.train, cfg.data.split, cfg.data.prompt,
                                                cfg.data.min_score), out, num_shards,
                             colbert_tokenization(loaded), str(cfg.data.train), overwrite, seed=cfg.seed)

    def streams(self, batch) -> dict[str, dict[str, jax.Array]]:
        real = batch["query_mask"]
        attention = jnp.ones_like(real) if self.attend_to_expansion else real
        query = {"ids": batch["query_ids"], "attention": attention, "vectors": jnp.ones_like(real)}
        if "doc_segments" in batch:  # documents packed (data.packing): vectors read back per document
            tokens = batch["doc_tokens"]
            ids = batch["doc_ids"].reshape(-1)[jnp.maximum(tokens, 0)]
            mask = (tokens >= 0).astype(jnp.int32)
            keep = mask * ~jnp.isin(ids, jnp.asarray(self.skiplist, jnp.int32)) if self.skiplist else mask
            return {"query": query, "doc": {"ids": batch["doc_ids"], "segments": batch["doc_segments"],
                                            "tokens": tokens, "vectors": keep}}
        length = batch["pos_ids"].shape[-1]
        ids = jnp.concatenate([batch["pos_ids"], batch["neg_ids"].reshape(-1, length)])
        mask = jnp.concatenate([batch["pos_mask"], batch["neg_mask"].reshape(-1, length)])
        keep = mask * ~jnp.isin(ids, jnp.asarray(self.skiplist, jnp.int32)) if self.skiplist else mask
        return {"query": query, "doc": {"ids": ids, "attention": mask, "vectors": keep}}

    @staticmethod
    def encode(model: ColBERT, name: str, inputs: dict[str, jax.Array], key) -> jax.Array:
        if "segments" in inputs:
            attention = (inputs["segments"] > 0).astype(jnp.int32)
            return model(inputs["ids"], attention, inputs["vectors"], dropout_key=key, segment_ids=inputs["segments"],
                         tokens=inputs["tokens"])[0]
        return model(inputs["ids"], inputs["attention"], inputs["vectors"], dropout_key=key)[0]

    def loss_from_reps(self, reps, batch, teacher_params=None) -> tuple[jax.Array, dict[str, jax.Array]]:
        c = self.cfg.colbert
        masks = self.streams(batch)
        q, q_mask = reps["query"], masks["query"]["vectors"]
        d, d_mask = reps["doc"], masks["doc"]["vectors"]
        if c.loss == "contrastive":
            scores = maxsim_scores(q, q_mask, d, d_mask, c.reduce, c.doc_chunk)  # [B, B(1 + N)]
            ids = jnp.concatenate([batch["pos_doc"], batch["neg_doc"].reshape(-1)])
            return infonce_from_scores(scores, ids, self.cfg.loss.temperature), {}
        b, n = batch["neg_doc"].shape
        # each query against its own group only: positive first, then its negatives
        group = jnp.concatenate([jnp.arange(b)[:, None], b + jnp.arange(b * n).reshape(b, n)], axis=1)  # [B, 1+N]
        per_query = jax.vmap(lambda qi, qm, rows: maxsim_dense(qi[None], qm[None], d[rows], d_mask[rows],
                                                               c.reduce)[0])
        student = per_query(q, q_mask, group)
        teacher = jnp.concatenate([batch["pos_score"][:, None], batch["neg_scores"]], axis=1)
        if c.loss == "margin_mse":  # raw MaxSim scores: the margins are fitted on the teacher's own scale
            return margin_mse_loss(student, teacher), {}
        loss = listwise_kl_loss(student, teacher, self.cfg.loss.temperature,
                                normalize_teacher=c.normalize_teacher_scores)
        return loss, {}
