"""BERT-family encoder (BERT, MiniLM, and other `model_type: bert` checkpoints) in flax.nnx.

Post-LayerNorm transformer with learned position and token-type embeddings. `HF_NAME_TABLE` maps Hugging Face
parameter names onto this module's parameter paths; it is the only place that knows both namings.

The same module serves the post-LN relatives through three switches (see xlm_roberta.py and mpnet.py):
`padding_position_idx` (RoBERTa-style positions counted over non-pad tokens, starting after the pad index),
`type_vocab_size: 0` (no token-type embeddings) and `relative_attention_buckets` (MPNet's bucketed relative
position bias, shared by all layers).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxretrieval.models import layers


@dataclasses.dataclass(frozen=True)
class BertConfig:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    pad_token_id: int = 0
    initializer_range: float = 0.02
    padding_position_idx: int | None = None  # RoBERTa/XLM-R/MPNet: positions = pad idx + running count of tokens
    relative_attention_buckets: int = 0  # MPNet: bucketed relative position bias (0 = none)
    relative_max_distance: int = 128

    @classmethod
    def from_hf(cls, hf: dict[str, Any]) -> "BertConfig":
        pet = hf.get("position_embedding_type", "absolute")
        if pet not in (None, "absolute"):
            raise ValueError(f"position_embedding_type {pet!r} is not supported (only 'absolute')")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in hf.items() if k in names and v is not None})


class BertEmbeddings(nnx.Module):
    def __init__(self, cfg: BertConfig, dtype, rngs: nnx.Rngs):
        init = nnx.initializers.normal(cfg.initializer_range)
        self.word_embeddings = nnx.Embed(cfg.vocab_size, cfg.hidden_size, dtype=dtype, embedding_init=init,
                                         rngs=rngs)
        self.position_embeddings = nnx.Embed(cfg.max_position_embeddings, cfg.hidden_size, dtype=dtype,
                                             embedding_init=init, rngs=rngs)
        if cfg.type_vocab_size > 0:
            self.token_type_embeddings = nnx.Embed(cfg.type_vocab_size, cfg.hidden_size, dtype=dtype,
                                                   embedding_init=init, rngs=rngs)
        self.layer_norm = nnx.LayerNorm(cfg.hidden_size, epsilon=cfg.layer_norm_eps, dtype=dtype, rngs=rngs)
        self.cfg = cfg

    def __call__(self, input_ids, token_type_ids, segment_ids=None):
        pad = self.cfg.padding_position_idx
        if segment_ids is not None:  # packed rows: each sequence counts its positions from its own start
            within = layers.segment_positions(segment_ids)
            # padding sits at position 0 (or the pad index): a long padding run must not count past the table
            positions = jnp.where(segment_ids > 0, within, 0) if pad is None else jnp.where(segment_ids > 0,
                                                                                         within + pad + 1, pad)
        elif pad is None:
            positions = jnp.arange(input_ids.shape[1])[None, :]
        else:  # as HF create_position_ids_from_input_ids: pad tokens sit at `pad`, real ones count up from pad + 1
            real = (input_ids != pad).astype(jnp.int32)
            positions = jnp.cumsum(real, axis=1) * real + pad
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)
        if self.cfg.type_vocab_size > 0:
            x = x + self.token_type_embeddings(token_type_ids)
        return self.layer_norm(x)


class BertLayer(nnx.Module):
    def __init__(self, cfg: BertConfig, dtype, rngs: nnx.Rngs):
        h, std = cfg.hidden_size, cfg.initializer_range
        self.cfg = cfg
        self.query = layers.linear(h, h, rngs, dtype, init_std=std)
        self.key = layers.linear(h, h, rngs, dtype, init_std=std)
        self.value = layers.linear(h, h, rngs, dtype, init_std=std)
        self.attention_out = layers.linear(h, h, rngs, dtype, init_std=std)
        self.attention_norm = nnx.LayerNorm(h, epsilon=cfg.layer_norm_eps, dtype=dtype, rngs=rngs)
        self.intermediate = layers.linear(h, cfg.intermediate_size, rngs, dtype, init_std=std)
        self.output = layers.linear(cfg.intermediate_size, h, rngs, dtype, init_std=std)
        self.output_norm = nnx.LayerNorm(h, epsilon=cfg.layer_norm_eps, dtype=dtype, rngs=rngs)

    def __call__(self, x, key_mask, dropout_key=None, bias=None, segment_ids=None):
        cfg = self.cfg
        k_attn, k_out1, k_out2 = layers.split_key(dropout_key, 3)
        b, l, h = x.shape
        heads = cfg.num_attention_heads
        split = lambda t: t.reshape(b, l, heads, h // heads)
        ctx = layers.attention(split(self.query(x)), split(self.key(x)), split(self.value(x)), key_mask, bias=bias,
                               dropout_rate=cfg.attention_probs_dropout_prob, dropout_key=k_attn,
                               segment_ids=segment_ids)
        attn = layers.dropout(self.attention_out(ctx.reshape(b, l, h)), cfg.hidden_dropout_prob, k_out1)
        x = self.attention_norm(x + attn)
        ff = self.output(layers.activation(cfg.hidden_act)(self.intermediate(x)))
        return self.output_norm(x + layers.dropout(ff, cfg.hidden_dropout_prob, k_out2))


class BertEncoder(nnx.Module):
    """input ids int32[B, L], attention mask int[B, L] (1 = token) → last hidden state [B, L, hidden].

    With segment_ids int32[B, L] (0 = padding, k > 0 = the row's k-th sequence) a row holds several sequences
    (packing): attention stays inside each one and positions restart at its start. The relative bias of MPNet
    depends only on the distance between two tokens, so the row's own bias serves every sequence in it."""

    def __init__(self, cfg: BertConfig, dtype=jnp.float32, rngs: nnx.Rngs | None = None):
        rngs = rngs if rngs is not None else nnx.Rngs(0)
        self.cfg = cfg
        self.remat = "none"  # layers.REMAT_POLICIES; set from model.remat for training
        self.embeddings = BertEmbeddings(cfg, dtype, rngs)
        self.layers = nnx.List([BertLayer(cfg, dtype, rngs) for _ in range(cfg.num_hidden_layers)])
        if cfg.relative_attention_buckets:
            self.relative_attention_bias = nnx.Embed(cfg.relative_attention_buckets, cfg.num_attention_heads,
                                                     embedding_init=nnx.initializers.normal(cfg.initializer_range),
                                                     rngs=rngs)

    @property
    def hidden_size(self) -> int:
        return self.cfg.hidden_size

    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array, token_type_ids: jax.Array | None = None,
                 dropout_key: jax.Array | None = None, segment_ids: jax.Array | None = None) -> jax.Array:
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        keys = layers.split_key(dropout_key, len(self.layers) + 1)
        x = layers.dropout(self.embeddings(input_ids, token_type_ids, segment_ids), self.cfg.hidden_dropout_prob,
                           keys[0])
        key_mask = attention_mask.astype(bool)
        bias = None
        if self.cfg.relative_attention_buckets:
            buckets = relative_position_buckets(input_ids.shape[1], self.cfg.relative_attention_buckets,
                                                self.cfg.relative_max_distance)
            bias = jnp.transpose(self.relative_attention_bias(jnp.asarray(buckets)), (2, 0, 1))[None]  # [1,H,L,L]
        for layer, k in zip(self.layers, keys[1:]):
            x = layers.call_layer(layer, self.remat, x, key_mask, k, bias, segment_ids)
        return x


@functools.lru_cache(maxsize=64)
def relative_position_buckets(length: int, num_buckets: int, max_distance: int) -> np.ndarray:
    """MPNet/T5 bidirectional buckets of (key position − query position), int32[length, length].

    Computed in NumPy float32 at trace time (the length is static), with the same operation order as the
    reference implementation so that distances on a bucket boundary land in the same bucket."""
    pos = np.arange(length)
    n = -(pos[None, :] - pos[:, None])
    half = num_buckets // 2
    ret = (n < 0).astype(np.int64) * half
    n = np.abs(n)
    max_exact = half // 2
    with np.errstate(divide="ignore"):
        scaled = (np.log(n.astype(np.float32) / np.float32(max_exact)) / np.float32(math.log(max_distance / max_exact))
                  * np.float32(half - max_exact))
    large = max_exact + np.where(n < max_exact, 0, scaled).astype(np.int64)
    large = np.minimum(large, half - 1)
    return (ret + np.where(n < max_exact, n, large)).astype(np.int32)


# (Hugging Face name, our path, transform). `{i}` is the layer index. "T" transposes a torch Linear weight
# [out, in] into a flax kernel [in, out].
_HF_LAYER = "encoder.layer.{i}."
HF_NAME_TABLE: list[tuple[str, str, str]] = [
    ("embeddings.word_embeddings.weight", "embeddings.word_embeddings.embedding", ""),
    ("embeddings.position_embeddings.weight", "embeddings.position_embeddings.embedding", ""),
    ("embeddings.token_type_embeddings.weight", "embeddings.token_type_embeddings.embedding", ""),
    ("embeddings.LayerNorm.weight", "embeddings.layer_norm.scale", ""),
    ("embeddings.LayerNorm.bias", "embeddings.layer_norm.bias", ""),
] + [
    (_HF_LAYER + hf + ".weight", "layers.{i}." + ours + ".kernel", "T")
    for hf, ours in [("attention.self.query", "query"), ("attention.self.key", "key"),
                     ("attention.self.value", "value"), ("attention.output.dense", "attention_out"),
                     ("intermediate.dense", "intermediate"), ("output.dense", "output")]
] + [
    (_HF_LAYER + hf + ".bias", "layers.{i}." + ours + ".bias", "")
    for hf, ours in [("attention.self.query", "query"), ("attention.self.key", "key"),
                     ("attention.self.value", "value"), ("attention.output.dense", "attention_out"),
                     ("intermediate.dense", "intermediate"), ("output.dense", "output")]
] + [
    (_HF_LAYER + "attention.output.LayerNorm.weight", "layers.{i}.attention_norm.scale", ""),
    (_HF_LAYER + "attention.output.LayerNorm.bias", "layers.{i}.attention_norm.bias", ""),
    (_HF_LAYER + "output.LayerNorm.weight", "layers.{i}.output_norm.scale", ""),
    (_HF_LAYER + "output.LayerNorm.bias", "layers.{i}.output_norm.bias", ""),
]

# Prefixes that task-specific HF classes put in front of the bare encoder's names.
HF_PREFIXES = ("bert.", "model.")
