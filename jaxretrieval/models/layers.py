"""Building blocks shared by encoder families: dense layers, attention, activations, dropout.

Dropout takes an explicit PRNG key (None = off) instead of nnx.Rngs state, so a forward pass is a pure function of
(parameters, batch, key): that is what makes jit steps, sharding and exact resume simple.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
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


def _fmix32(h: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finalizer: every input bit flips each output bit with probability ~1/2."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def keep_mask(key: jax.Array, rate: float, shape: tuple[int, ...]) -> jax.Array:
    """Inverted-dropout multiplier: 0 with probability `rate`, else 1 / (1 - rate); float32[shape].

    The uniforms are a keyed hash of each element's (row, column) position, seeded by two words drawn from `key`,
    not jax.random bits: on CPU threefry costs several times more per word than the hash, enough to make dropout
    (attention probabilities, drawn again in the backward) a visible share of a step; with the hash it is not
    (docs/results.md). A mask is a pure function of (key, shape), so steps stay
    reproducible and resume exact; rows are hashed before columns join them, so two keys' masks are not shifted
    copies of each other. Rate resolution is 2^-32.
    """
    if rate >= 1.0:
        return jnp.zeros(shape, jnp.float32)
    shape = tuple(shape)
    if not shape:
        return keep_mask(key, rate, (1,))[0]
    seeds = jax.random.bits(key, (2,), jnp.uint32)
    # row = the position over all leading dims, built from per-dim iotas (no reshape, so a batch-sharded mask is
    # computed shard by shard)
    lead = shape[:-1]
    row, stride = jnp.zeros(lead, jnp.uint32), 1
    for d in reversed(range(len(lead))):  # row-major: the last leading dim moves fastest
        row = row + jax.lax.broadcasted_iota(jnp.uint32, lead, d) * jnp.uint32(stride % 2**32)
        stride *= lead[d]
    row_hash = _fmix32(row * jnp.uint32(0x9E3779B9) ^ seeds[0])
    col_words = jax.lax.iota(jnp.uint32, shape[-1]) * jnp.uint32(0x7FEB352D) + seeds[1]
    uniforms = _fmix32(row_hash[..., None] ^ col_words)
    threshold = min(int(round(rate * 2.0**32)), 2**32 - 1)
    keep_prob = 1.0 - threshold / 2.0**32
    return jnp.where(uniforms >= jnp.uint32(threshold), jnp.float32(1.0 / keep_prob), jnp.float32(0.0))


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Inverted dropout; identity when key is None (inference) or rate is 0."""
    if key is None or rate == 0.0:
        return x
    return x * keep_mask(key, rate, x.shape).astype(x.dtype)


def split_key(key: jax.Array | None, n: int) -> list[jax.Array | None]:
    if key is None:
        return [None] * n
    return list(jax.random.split(key, n))


REMAT_POLICIES = ("none", "full", "dots")


def call_layer(layer: nnx.Module, remat: str, *args) -> jax.Array:
    """layer(*args), its activations kept for the backward ("none"), recomputed there ("full": only the layer's
    input is kept), or recomputed but for the matrix products' outputs ("dots"). Recomputing trades up to a
    third more compute for activation memory that no longer grows with the layer count: what lets a long-context
    or large-batch step fit an accelerator's memory without GradCache."""
    if remat == "none":
        return layer(*args)
    policy = None if remat == "full" else jax.checkpoint_policies.dots_with_no_batch_dims_saveable
    return nnx.remat(lambda module, *a: module(*a), policy=policy)(layer, *args)


def linear(in_features: int, out_features: int, rngs: nnx.Rngs, dtype, use_bias: bool = True,
           init_std: float = 0.02) -> nnx.Linear:
    return nnx.Linear(in_features, out_features, use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32,
                      kernel_init=nnx.initializers.normal(init_std), rngs=rngs)


def segment_positions(segment_ids: jax.Array) -> jax.Array:
    """Each token's position inside its own sequence of a packed row: int32[B, L] → int32[B, L], restarting at 0
    wherever the segment id changes (padding counts as a segment, and its positions are never read)."""
    column = jax.lax.broadcasted_iota(jnp.int32, segment_ids.shape, 1)
    previous = jnp.concatenate([segment_ids[:, :1] - 1, segment_ids[:, :-1]], axis=1)
    starts = jnp.where(segment_ids != previous, column, 0)
    return column - jax.lax.cummax(starts, axis=1)


def attention(q: jax.Array, k: jax.Array, v: jax.Array, key_mask: jax.Array, bias: jax.Array | None = None,
              causal: bool = False, dropout_rate: float = 0.0, dropout_key: jax.Array | None = None,
              segment_ids: jax.Array | None = None) -> jax.Array:
    """Scaled dot-product attention.

    q: [B, Lq, H, D]; k, v: [B, Lk, Hkv, D] with H a multiple of Hkv (grouped-query attention);
    key_mask: bool [B, Lk], False for padding; bias: optional additive [B or 1, H, Lq, Lk]; segment_ids: optional
    int32 [B, L] (Lq = Lk) for packed rows, where a token attends only to tokens of its own segment (block-diagonal
    attention). Returns [B, Lq, H, D]. On CPU a bfloat16 model computes scores and weighted values in float32: there
    the small per-head products are slower in bfloat16 than in float32 (and the softmax needs float32 anyway).

    On CPU, XLA runs the batched [B·H] small matmuls and the [B, H, L, L] softmax out of cache and on one thread;
    going example by example keeps each example's scores in cache, and a hand-written backward that recomputes
    the probabilities avoids storing them, which makes both the forward and the backward several times faster on
    MiniLM shapes. Accelerators take jax.nn.dot_product_attention (cuDNN's fused kernel on GPU) when there is no
    attention dropout, and the batched form with it. JAXRETRIEVAL_ATTENTION=batched|per_example|fused overrides the
    choice.
    """
    num_heads, num_kv = q.shape[2], k.shape[2]
    out_dtype = v.dtype
    if num_kv != num_heads:
        k = jnp.repeat(k, num_heads // num_kv, axis=2)
        v = jnp.repeat(v, num_heads // num_kv, axis=2)
    impl = os.environ.get("JAXRETRIEVAL_ATTENTION", "auto")
    if impl == "per_example" or (impl == "auto" and jax.default_backend() == "cpu"):
        b = q.shape[0]
        drop = dropout_key is not None and dropout_rate > 0.0
        keys = jax.random.split(dropout_key, b) if drop else None
        full_bias = None if bias is None else jnp.broadcast_to(bias, (b,) + bias.shape[1:]).astype(jnp.float32)
        q, k, v = (t.astype(jnp.float32) for t in (q, k, v))
        out = _per_example_attention(q, k, v, key_mask, full_bias, segment_ids, keys, causal,
                                     dropout_rate if drop else 0.0)
    elif impl in ("fused", "auto") and (dropout_key is None or dropout_rate == 0.0):
        out = _fused_attention(q, k, v, key_mask, bias, causal, segment_ids)
    else:
        out = _batched_attention(q, k, v, key_mask, bias, causal, dropout_rate, dropout_key, segment_ids)
    return out.astype(out_dtype)


def _fused_attention(q, k, v, key_mask, bias, causal, segment_ids):
    """jax.nn.dot_product_attention: cuDNN's fused kernel on GPU where it takes the shapes and mask, XLA's
    composition elsewhere. It has no dropout, so training with attention dropout takes _batched_attention."""
    mask = key_mask[:, None, None, :]
    if segment_ids is not None:
        mask = mask & (segment_ids[:, :, None] == segment_ids[:, None, :])[:, None]
    if causal:
        lq, lk = q.shape[1], k.shape[1]
        mask = mask & jnp.tril(jnp.ones((lq, lk), bool), k=lk - lq)[None, None]
    bias = None if bias is None else jnp.broadcast_to(bias, (q.shape[0],) + bias.shape[1:]).astype(q.dtype)
    return jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask)


def _batched_attention(q, k, v, key_mask, bias=None, causal=False, dropout_rate=0.0, dropout_key=None,
                       segment_ids=None):
    """The per-example probabilities vmapped over the batch: one [B, H, Lq, Lk] computation."""
    if bias is not None:
        bias = jnp.broadcast_to(bias, (q.shape[0],) + bias.shape[1:]).astype(jnp.float32)
    probs = jax.vmap(_example_probs, in_axes=(0, 0, 0, None if bias is None else 0, None if segment_ids is None else 0,
                                              None))(q, k, key_mask, bias, segment_ids, causal)
    probs = dropout(probs, dropout_rate, dropout_key).astype(v.dtype)
    return jnp.einsum("bhqk,bkhd->bqhd", probs, v)


def _example_probs(q, k, key_mask, bias, segment_ids, causal):
    """One example: q [Lq, H, D], k [Lk, H, D] → float32 probabilities [H, Lq, Lk]. Softmax runs in float32
    whatever the compute dtype: a bf16 softmax over 512 keys loses the small weights. The softmax is written
    out (max, exp, sum): on CPU, jax.nn.softmax's extra passes over the scores make attention slower. A row with
    every key masked gets uniform weights either way."""
    scale = 1.0 / np.sqrt(q.shape[-1])
    scores = jnp.einsum("qhd,khd->hqk", q, k).astype(jnp.float32) * scale
    if bias is not None:
        scores = scores + bias
    mask = key_mask[None, None, :]
    if segment_ids is not None:
        mask = mask & (segment_ids[:, None] == segment_ids[None, :])[None]
    if causal:
        lq, lk = q.shape[0], k.shape[0]
        mask = mask & jnp.tril(jnp.ones((lq, lk), bool), k=lk - lq)[None]
    scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
    weights = jnp.exp(scores - jax.lax.stop_gradient(scores.max(axis=-1, keepdims=True)))
    return weights / weights.sum(axis=-1, keepdims=True)


@functools.partial(jax.custom_vjp, nondiff_argnums=(7, 8))
def _per_example_attention(q, k, v, key_mask, bias, segment_ids, keys, causal, rate):
    def one(args):
        qi, ki, vi, mi, bi, si, key = args
        p = _example_probs(qi, ki, mi, bi, si, causal)
        if key is not None:
            p = p * keep_mask(key, rate, p.shape)
        return jnp.einsum("hqk,khd->qhd", p.astype(vi.dtype), vi)

    return jax.lax.map(one, (q, k, v, key_mask, bias, segment_ids, keys))


def _per_example_fwd(q, k, v, key_mask, bias, segment_ids, keys, causal, rate):
    out = _per_example_attention(q, k, v, key_mask, bias, segment_ids, keys, causal, rate)
    return out, (q, k, v, key_mask, bias, segment_ids, keys)


def _per_example_bwd(causal, rate, residuals, d_out):
    q, k, v, key_mask, bias, segment_ids, keys = residuals
    scale = 1.0 / np.sqrt(q.shape[-1])

    def one(args):
        qi, ki, vi, mi, bi, si, key, doi = args
        p = _example_probs(qi, ki, mi, bi, si, causal)
        doi = doi.astype(jnp.float32)
        keep = None if key is None else keep_mask(key, rate, p.shape)
        p_used = p if keep is None else p * keep
        dv = jnp.einsum("hqk,qhd->khd", p_used, doi)
        dp = jnp.einsum("qhd,khd->hqk", doi, vi.astype(jnp.float32))
        if keep is not None:
            dp = dp * keep
        ds = p * (dp - jnp.sum(dp * p, axis=-1, keepdims=True))
        dq = jnp.einsum("hqk,khd->qhd", ds, ki.astype(jnp.float32)) * scale
        dk = jnp.einsum("hqk,qhd->khd", ds, qi.astype(jnp.float32)) * scale
        return dq.astype(qi.dtype), dk.astype(ki.dtype), dv.astype(vi.dtype), None if bi is None else ds

    dq, dk, dv, dbias = jax.lax.map(one, (q, k, v, key_mask, bias, segment_ids, keys, d_out))
    return dq, dk, dv, None, dbias, None, None


_per_example_attention.defvjp(_per_example_fwd, _per_example_bwd)
