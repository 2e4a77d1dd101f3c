"""The dense embedder task: encoder → pooling → optional Dense layers → optional L2 normalization.

It mirrors a sentence-transformers pipeline (Transformer, Pooling, Dense*, Normalize) module for module, so a
directory in that layout imports with exact numerical parity and exports back the same way.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from jaxretrieval.models import layers

# Order in which sentence-transformers concatenates pooling outputs when several modes are on.
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")


@dataclasses.dataclass(frozen=True)
class DenseSpec:
    in_features: int
    out_features: int
    bias: bool = True
    activation: str = "identity"  # identity | tanh | relu | gelu | ...


@dataclasses.dataclass(frozen=True)
class EmbedderSpec:
    """Everything about an embedder that is not a weight: how to pool, normalize, truncate and prompt."""

    pooling: tuple[str, ...] = ("mean",)
    normalize: bool = False
    max_length: int = 512
    dense: tuple[DenseSpec, ...] = ()
    query_prompt: str = ""
    doc_prompt: str = ""
    include_prompt: bool = True  # False: prompt tokens are excluded from pooling (as in INSTRUCTOR-style models)

    def __post_init__(self):
        unknown = [m for m in self.pooling if m not in POOLING_MODES]
        if unknown or not self.pooling:
            raise ValueError(f"pooling modes {list(self.pooling)} invalid; choose from {list(POOLING_MODES)}")


def last_token_index(mask: jax.Array) -> jax.Array:
    """Index of the last real token per row, for right or left padding alike. mask int[B, L] → int32[B]."""
    length = mask.shape[1]
    from_end = jnp.argmax(jnp.flip(mask, axis=1) > 0, axis=1)
    return (length - 1 - from_end).astype(jnp.int32)


def pool(hidden: jax.Array, mask: jax.Array, modes: tuple[str, ...]) -> jax.Array:
    """hidden float[B, L, H], mask int[B, L] → float32[B, H * len(modes)], same formulas (and mode names) as
    sentence-transformers' Pooling module."""
    hidden = hidden.astype(jnp.float32)
    m = mask.astype(jnp.float32)[..., None]
    count = jnp.maximum(m.sum(axis=1), 1e-9)
    outs = []
    for mode in modes:
        if mode == "cls":  # first real token: index 0 with right padding, also right under left padding
            first = jnp.argmax(mask > 0, axis=1)
            outs.append(jnp.take_along_axis(hidden, first[:, None, None], axis=1)[:, 0])
        elif mode == "max":
            outs.append(jnp.where(m > 0, hidden, -1e9).max(axis=1))
        elif mode == "mean":
            outs.append((hidden * m).sum(axis=1) / count)
        elif mode == "mean_sqrt_len_tokens":
            outs.append((hidden * m).sum(axis=1) / jnp.sqrt(count))
        elif mode == "weightedmean":
            w = m * jnp.arange(1, hidden.shape[1] + 1, dtype=jnp.float32)[None, :, None]
            outs.append((hidden * w).sum(axis=1) / jnp.maximum(w.sum(axis=1), 1e-9))
        elif mode == "lasttoken":
            idx = last_token_index(mask)
            outs.append(jnp.take_along_axis(hidden, idx[:, None, None], axis=1)[:, 0])
        else:
            raise ValueError(f"unknown pooling mode {mode!r}")
    return outs[0] if len(outs) == 1 else jnp.concatenate(outs, axis=-1)


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


class Embedder(nnx.Module):
    """encoder tokens → one vector per text. Returns float32[B, D]."""

    def __init__(self, encoder: nnx.Module, spec: EmbedderSpec, rngs: nnx.Rngs | None = None):
        rngs = rngs if rngs is not None else nnx.Rngs(0)
        self.encoder = encoder
        self.spec = spec
        self.dense = nnx.List([layers.linear(d.in_features, d.out_features, rngs, jnp.float32, use_bias=d.bias)
                               for d in spec.dense])

    @property
    def dim(self) -> int:
        if self.spec.dense:
            return self.spec.dense[-1].out_features
        return self.encoder.hidden_size * len(self.spec.pooling)

    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array, token_type_ids: jax.Array | None = None,
                 pool_mask: jax.Array | None = None, dropout_key: jax.Array | None = None) -> jax.Array:
        hidden = self.encoder(input_ids, attention_mask, token_type_ids, dropout_key=dropout_key)
        x = pool(hidden, attention_mask if pool_mask is None else pool_mask, self.spec.pooling)
        for spec, layer in zip(self.spec.dense, self.dense):
            x = layer(x)
            if spec.activation != "identity":
                x = layers.activation(spec.activation)(x)
        return l2_normalize(x) if self.spec.normalize else x
