"""Qwen2 decoder as an encoder (the base of gte-Qwen2, stella_en_1.5B_v5 and LLM rerankers) in flax.nnx.

Pre-RMSNorm causal transformer with rotary positions, grouped-query attention and a SwiGLU MLP. Used for
embeddings with last-token pooling, so the last hidden state must be right under left *and* right padding:
positions follow Hugging Face (0..L-1 whatever the padding), which is harmless because rotary attention between
real tokens depends only on their distance, and pad keys are masked.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxretrieval.models import layers


@dataclasses.dataclass(frozen=True)
class Qwen2Config:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    max_position_embeddings: int = 32768
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    hidden_act: str = "silu"
    attention_dropout: float = 0.0
    initializer_range: float = 0.02
    head_dim: int | None = None
    causal: bool = True  # gte-Qwen2 style bidirectional variants set this False

    @property
    def dim_per_head(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @classmethod
    def from_hf(cls, hf: dict[str, Any]) -> "Qwen2Config":
        rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type not in (None, "default"):
            raise ValueError(f"rope type {rope_type!r} is not supported (only 'default')")
        if hf.get("use_sliding_window"):
            raise ValueError("use_sliding_window=true is not supported")
        theta = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in hf.items() if k in names and v is not None}
        values.setdefault("num_key_value_heads", hf["num_attention_heads"])
        return cls(**{**values, "rope_theta": float(theta)})


class RMSNorm(nnx.Module):
    def __init__(self, size: int, eps: float, dtype):
        self.weight = nnx.Param(jnp.ones((size,), jnp.float32))
        self.eps, self.dtype = eps, dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return (self.weight.get_value() * x32.astype(self.dtype)).astype(self.dtype)


def rotary_tables(length: int, head_dim: int, theta: float) -> tuple[jax.Array, jax.Array]:
    """cos, sin float32[L, head_dim] for positions 0..L-1, halves repeated as in HF's rotate_half layout."""
    inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
    freqs = jnp.arange(length, dtype=jnp.float32)[:, None] * inv_freq[None, :]
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    return jnp.cos(emb), jnp.sin(emb)


def apply_rotary(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """x [B, L, H, D] rotated by position; cos, sin [L, D] (every row at positions 0..L-1) or [B, L, D] (each
    token's own position, for packed rows); computed in float32."""
    x32 = x.astype(jnp.float32)
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x32[..., half:], x32[..., :half]], axis=-1)
    if cos.ndim == 2:
        cos, sin = cos[None], sin[None]
    return (x32 * cos[:, :, None] + rotated * sin[:, :, None]).astype(x.dtype)


class Qwen2Layer(nnx.Module):
    def __init__(self, cfg: Qwen2Config, dtype, rngs: nnx.Rngs):
        h, d, std = cfg.hidden_size, cfg.dim_per_head, cfg.initializer_range
        self.cfg = cfg
        self.input_norm = RMSNorm(h, cfg.rms_norm_eps, dtype)
        self.q_proj = layers.linear(h, cfg.num_attention_heads * d, rngs, dtype, init_std=std)
        self.k_proj = layers.linear(h, cfg.num_key_value_heads * d, rngs, dtype, init_std=std)
        self.v_proj = layers.linear(h, cfg.num_key_value_heads * d, rngs, dtype, init_std=std)
        self.o_proj = layers.linear(cfg.num_attention_heads * d, h, rngs, dtype, use_bias=False, init_std=std)
        self.post_attention_norm = RMSNorm(h, cfg.rms_norm_eps, dtype)
        self.gate_proj = layers.linear(h, cfg.intermediate_size, rngs, dtype, use_bias=False, init_std=std)
        self.up_proj = layers.linear(h, cfg.intermediate_size, rngs, dtype, use_bias=False, init_std=std)
        self.down_proj = layers.linear(cfg.intermediate_size, h, rngs, dtype, use_bias=False, init_std=std)

    def __call__(self, x, key_mask, cos, sin, dropout_key=None, segment_ids=None):
        cfg = self.cfg
        b, l, _ = x.shape
        d = cfg.dim_per_head
        y = self.input_norm(x)
        q = apply_rotary(self.q_proj(y).reshape(b, l, cfg.num_attention_heads, d), cos, sin)
        k = apply_rotary(self.k_proj(y).reshape(b, l, cfg.num_key_value_heads, d), cos, sin)
        v = self.v_proj(y).reshape(b, l, cfg.num_key_value_heads, d)
        ctx = layers.attention(q, k, v, key_mask, causal=cfg.causal, dropout_rate=cfg.attention_dropout,
                               dropout_key=dropout_key, segment_ids=segment_ids)
        x = x + self.o_proj(ctx.reshape(b, l, cfg.num_attention_heads * d))
        y = self.post_attention_norm(x)
        act = layers.activation(cfg.hidden_act)
        return x + self.down_proj(act(self.gate_proj(y)) * self.up_proj(y))


class Qwen2Encoder(nnx.Module):
    """input ids int32[B, L], attention mask int[B, L] (1 = token, left or right padding) → final-norm hidden
    states [B, L, hidden]. token_type_ids are accepted for interface compatibility and ignored. With segment_ids
    (packed rows, as in bert.BertEncoder) attention stays inside each sequence, causal within it, and rotary
    positions restart at each sequence's start, as that sequence alone would see them."""

    def __init__(self, cfg: Qwen2Config, dtype=jnp.float32, rngs: nnx.Rngs | None = None):
        rngs = rngs if rngs is not None else nnx.Rngs(0)
        self.cfg = cfg
        self.remat = "none"  # layers.REMAT_POLICIES; set from model.remat for training
        self.embed_tokens = nnx.Embed(cfg.vocab_size, cfg.hidden_size, dtype=dtype,
                                      embedding_init=nnx.initializers.normal(cfg.initializer_range), rngs=rngs)
        self.layers = nnx.List([Qwen2Layer(cfg, dtype, rngs) for _ in range(cfg.num_hidden_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, dtype)

    @property
    def hidden_size(self) -> int:
        return self.cfg.hidden_size

    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array, token_type_ids: jax.Array | None = None,
                 dropout_key: jax.Array | None = None, segment_ids: jax.Array | None = None) -> jax.Array:
        del token_type_ids
        cos, sin = rotary_tables(input_ids.shape[1], self.cfg.dim_per_head, self.cfg.rope_theta)
        if segment_ids is not None:
            positions = layers.segment_positions(segment_ids)
            cos, sin = cos[positions], sin[positions]
        keys = layers.split_key(dropout_key, len(self.layers))
        x = self.embed_tokens(input_ids)
        key_mask = attention_mask.astype(bool)
        for layer, k in zip(self.layers, keys):
            x = layers.call_layer(layer, self.remat, x, key_mask, cos, sin, k, segment_ids)
        return self.norm(x)


_L = "layers.{i}."
HF_NAME_TABLE: list[tuple[str, str, str]] = [
    ("embed_tokens.weight", "embed_tokens.embedding", ""),
    ("norm.weight", "norm.weight", ""),
    (_L + "input_layernorm.weight", "layers.{i}.input_norm.weight", ""),
    (_L + "post_attention_layernorm.weight", "layers.{i}.post_attention_norm.weight", ""),
] + [
    (_L + f"{part}.{name}.weight", "layers.{i}." + name + ".kernel", "T")
    for part, names in (("self_attn", ("q_proj", "k_proj", "v_proj", "o_proj")),
                        ("mlp", ("gate_proj", "up_proj", "down_proj")))
    for name in names
] + [
    (_L + f"self_attn.{name}.bias", "layers.{i}." + name + ".bias", "") for name in ("q_proj", "k_proj", "v_proj")
]
HF_PREFIXES = ("model.",)
