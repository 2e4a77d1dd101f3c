"""Building blocks shared by encoder families: dense layers, attention, activations, dropout.

Dropout takes an explicit PRNG key (None = off) instead of nnx.Rngs state, so a forward pass is a pure function of
(parameters, batch, key): that is what makes jit steps, sharding and exact resume simple.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
from flax import nnx

ACTIVATIONS = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_fast": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "tanh": jnp.tanh,
}


def activation(name: str):
    if name not in ACTIVATIONS:
        raise ValueError(f"unsupported activation {name!r}; known: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Inverted dropout; identity when key is None (inference) or rate is 0."""
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


def split_key(key: jax.Array | None, n: int) -> list[jax.Array | None]:
    if key is None:
        return [None] * n
    return list(jax.random.split(key, n))


def linear(in_features: int, out_features: int, rngs: nnx.Rngs, dtype, use_bias: bool = True,
           init_std: float = 0.02) -> nnx.Linear:
    return nnx.Linear(in_features, out_features, use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32,
                      kernel_init=nnx.initializers.normal(init_std), rngs=rngs)


def attention(q: jax.Array, k: jax.Array, v: jax.Array, key_mask: jax.Array, bias: jax.Array | None = None,
              causal: bool = False, dropout_rate: float = 0.0, dropout_key: jax.Array | None = None) -> jax.Array:
    """Scaled dot-product attention.

    q: [B, Lq, H, D]; k, v: [B, Lk, Hkv, D] with H a multiple of Hkv (grouped-query attention);
    key_mask: bool [B, Lk], False for padding; bias: optional additive [B or 1, H, Lq, Lk]. Returns [B, Lq, H, D].

    On CPU, XLA runs the batched [B·H] small matmuls and the [B, H, L, L] softmax out of cache and on one thread;
    looping over examples with lax.map keeps each example's scores in cache and measured 5x faster (MiniLM,
    B=32, L=256: 80 ms vs 400 ms a layer). Accelerators take the batched form.
    """
    impl = os.environ.get("JAXRETRIEVAL_ATTENTION", "auto")
    if q.shape[0] > 1 and (impl == "per_example" or (impl == "auto" and jax.default_backend() == "cpu")):
        b = q.shape[0]
        keys = None if dropout_key is None else jax.random.split(dropout_key, b)
        full_bias = None if bias is None else jnp.broadcast_to(bias, (b,) + bias.shape[1:])

        def one(args):
            qi, ki, vi, mi, bi, key = args
            return _attention(qi[None], ki[None], vi[None], mi[None], None if bi is None else bi[None], causal,
                              dropout_rate, key)[0]

        return jax.lax.map(one, (q, k, v, key_mask, full_bias, keys))
    return _attention(q, k, v, key_mask, bias, causal, dropout_rate, dropout_key)


def _attention(q, k, v, key_mask, bias=None, causal=False, dropout_rate=0.0, dropout_key=None):
    """Softmax runs in float32 whatever the compute dtype: bf16 softmax over 512 keys loses the small weights."""
    num_heads, num_kv = q.shape[2], k.shape[2]
    if num_kv != num_heads:
        k = jnp.repeat(k, num_heads // num_kv, axis=2)
        v = jnp.repeat(v, num_heads // num_kv, axis=2)
    scale = 1.0 / jnp.sqrt(jnp.asarray(q.shape[-1], jnp.float32))
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) * scale
    if bias is not None:
        scores = scores + bias.astype(jnp.float32)
    mask = key_mask[:, None, None, :]
    if causal:
        lq, lk = q.shape[1], k.shape[1]
        mask = mask & jnp.tril(jnp.ones((lq, lk), bool), k=lk - lq)[None, None]
    scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1)
    probs = dropout(probs, dropout_rate, dropout_key).astype(v.dtype)
    return jnp.einsum("bhqk,bkhd->bqhd", probs, v)
