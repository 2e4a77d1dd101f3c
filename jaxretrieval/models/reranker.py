"""Cross-encoder rerankers: an encoder over the (query, document) pair with a score head, shaped exactly like the
Hugging Face `*ForSequenceClassification` head of its family (num_labels = 1), so that the export loads with
`AutoModelForSequenceClassification` and `sentence_transformers.CrossEncoder` and scores the same:

- bert:                     tanh(pooler(h[first])) → classifier
- xlm-roberta/roberta/mpnet: tanh(classifier.dense(h[first])) → classifier.out_proj
- qwen2 (LLM reranker):     score(h[last real token]), no bias; left or right padding
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxretrieval.models import layers
from jaxretrieval.models.embedder import Packing, last_token_index

HEAD_KINDS = {"bert": "pooler", "xlm-roberta": "classifier", "roberta": "classifier", "mpnet": "classifier",
              "qwen2": "last_token"}
SEQUENCE_CLASSIFICATION = {"bert": "BertForSequenceClassification",
                           "xlm-roberta": "XLMRobertaForSequenceClassification",
                           "roberta": "RobertaForSequenceClassification", "mpnet": "MPNetForSequenceClassification",
                           "qwen2": "Qwen2ForSequenceClassification"}
# prefix of the encoder's weights inside the *ForSequenceClassification model
ENCODER_PREFIX = {"bert": "bert.", "xlm-roberta": "roberta.", "roberta": "roberta.", "mpnet": "mpnet.",
                  "qwen2": "model."}
# (our head path, HF name, transform) per head kind
HEAD_NAME_TABLE = {
    "pooler": [("pooler.kernel", "bert.pooler.dense.weight", "T"), ("pooler.bias", "bert.pooler.dense.bias", ""),
               ("classifier.kernel", "classifier.weight", "T"), ("classifier.bias", "classifier.bias", "")],
    "classifier": [("dense.kernel", "classifier.dense.weight", "T"), ("dense.bias", "classifier.dense.bias", ""),
                   ("out_proj.kernel", "classifier.out_proj.weight", "T"),
                   ("out_proj.bias", "classifier.out_proj.bias", "")],
    "last_token": [("score.kernel", "score.weight", "T")],
}


class CrossEncoder(nnx.Module):
    """(input_ids, attention_mask, token_type_ids) int32[B, L] → relevance logits float32[B]; or, with `packing`,
    packed rows of several pairs each → float32[N] for the N pair slots (the head reads each pair's first or last
    token)."""

    def __init__(self, encoder: nnx.Module, family: str, dropout_rate: float = 0.1, rngs: nnx.Rngs | None = None):
        rngs = rngs if rngs is not None else nnx.Rngs(0)
        if family not in HEAD_KINDS:
            raise ValueError(f"no reranker head for family {family!r}; known: {sorted(HEAD_KINDS)}")
        h = encoder.hidden_size
        self.encoder = encoder
        self.family = family
        self.head_kind = HEAD_KINDS[family]
        self.dropout_rate = dropout_rate
        if self.head_kind == "pooler":
            self.pooler = layers.linear(h, h, rngs, jnp.float32)
            self.classifier = layers.linear(h, 1, rngs, jnp.float32)
        elif self.head_kind == "classifier":
            self.dense = layers.linear(h, h, rngs, jnp.float32)
            self.out_proj = layers.linear(h, 1, rngs, jnp.float32)
        else:
            self.score = layers.linear(h, 1, rngs, jnp.float32, use_bias=False)

    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array, token_type_ids: jax.Array | None = None,
                 dropout_key: jax.Array | None = None, packing: Packing | None = None) -> jax.Array:
        keys = layers.split_key(dropout_key, 3)
        segments = None if packing is None else packing.segment_ids
        hidden = self.encoder(input_ids, attention_mask, token_type_ids, dropout_key=keys[0],
                              segment_ids=segments).astype(jnp.float32)
        flat = hidden.reshape(-1, hidden.shape[-1])
        if self.head_kind == "last_token":
            if packing is not None:
                return self.score(flat[packing.last])[:, 0]
            idx = last_token_index(attention_mask)
            return self.score(jnp.take_along_axis(hidden, idx[:, None, None], axis=1)[:, 0])[:, 0]
        first = hidden[:, 0] if packing is None else flat[packing.first]
        if self.head_kind == "pooler":
            pooled = jnp.tanh(self.pooler(first))
            return self.classifier(layers.dropout(pooled, self.dropout_rate, keys[1]))[:, 0]
        x = jnp.tanh(self.dense(layers.dropout(first, self.dropout_rate, keys[1])))
        return self.out_proj(layers.dropout(x, self.dropout_rate, keys[2]))[:, 0]
