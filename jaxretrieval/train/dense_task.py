"""The dense-embedder training task: what a batch holds, and the loss of a model on it.

The train loop knows nothing else about the task, so ColBERT and rerankers plug in with their own batch source
and loss function beside this one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxretrieval.config import LossConfig
from jaxretrieval.losses.contrastive import infonce_loss
from jaxretrieval.models.embedder import Embedder


def dense_contrastive_loss(model: Embedder, batch: dict[str, jax.Array], dropout_key: jax.Array | None,
                           cfg: LossConfig) -> jax.Array:
    """batch: query_ids/query_mask int32[B, Lq], pos_ids/pos_mask int32[B, Ld], neg_ids/neg_mask
    int32[B, N, Ld], query_text int32[B], pos_doc int32[B], neg_doc int32[B, N] (text ids for duplicate masks)."""
    q_key, d_key = (None, None) if dropout_key is None else jax.random.split(dropout_key)
    queries = model(batch["query_ids"], batch["query_mask"], dropout_key=q_key)
    length = batch["pos_ids"].shape[-1]
    doc_ids = jnp.concatenate([batch["pos_ids"], batch["neg_ids"].reshape(-1, length)])
    doc_mask = jnp.concatenate([batch["pos_mask"], batch["neg_mask"].reshape(-1, length)])
    docs = model(doc_ids, doc_mask, dropout_key=d_key)
    text_ids = jnp.concatenate([batch["pos_doc"], batch["neg_doc"].reshape(-1)])
    return infonce_loss(queries, docs, text_ids, cfg.temperature, cfg.symmetric, batch["query_text"])
