"""The dense embedder task: encoder → pooling → optional Dense layers → optional L2 normalization.

It mirrors a sentence-transformers pipeline (Transformer, Pooling, Dense*, Normalize) module for module, so a
directory in that layout imports with exact numerical parity and exports back the same way.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

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
    # Matryoshka: smaller output dims besides the main one. "heads": a linear head per dim from the pooled vector
    # (Stella v5 / Jasper ship them as 2_Dense_<dim>); "slice": the first `dim` values of the main output.
    matryoshka_dims: tuple[int, ...] = ()
    matryoshka_mode: str = "heads"

    def __post_init__(self):
        unknown = [m for m in self.pooling if m not in POOLING_MODES]
        if unknown or not self.pooling:
            raise ValueError(f"pooling modes {list(self.pooling)} invalid; choose from {list(POOLING_MODES)}")
        if self.matryoshka_mode not in ("heads", "slice"):
            raise ValueError(f"matryoshka_mode must be heads or slice, got {self.matryoshka_mode!r}")


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


class Packing(NamedTuple):
    """Where each text sits in a batch of packed rows (several texts per row, no padding between them), for the
    encoder's block-diagonal attention and for pooling each text on its own. N, the number of text slots, is
    static; slots past the batch's real texts point at token 0 and their vectors are dropped by the caller."""

    segment_ids: jax.Array  # int32[R, L]: 0 = padding, k > 0 = the row's k-th text
    token_text: jax.Array  # int32[R, L]: the slot each token is pooled into, N for tokens not pooled
    first: jax.Array  # int32[N]: flat index (row · L + column) of each text's first pooled token
    last: jax.Array  # int32[N]: flat index of each text's last token


PACKED_INPUTS = ("ids", "segments", "token_text", "first", "last")


def embed_inputs(model: "Embedder", inputs: dict[str, jax.Array], dropout_key: jax.Array | None = None,
                 all_dims: bool = False) -> jax.Array | dict[int, jax.Array]:
    """A training stream's vectors: inputs {"ids", "mask"} (int32[B, L], one text per row) or the packed
    PACKED_INPUTS (data/packing.packed_stream). The main output float32[texts, D], or with all_dims {dim: vectors}
    for it and every Matryoshka dim, from one pass."""
    packing = None
    if "segments" in inputs:
        packing = Packing(inputs["segments"], inputs["token_text"], inputs["first"], inputs["last"])
    mask = inputs["mask"] if packing is None else (packing.segment_ids > 0).astype(jnp.int32)
    if all_dims:
        return model.embed_all(inputs["ids"], mask, dropout_key=dropout_key, packing=packing)
    return model(inputs["ids"], mask, dropout_key=dropout_key, packing=packing)


def pool_packed(hidden: jax.Array, packing: Packing, modes: tuple[str, ...]) -> jax.Array:
    """hidden float[R, L, H] of packed rows → float32[N, H * len(modes)]: `pool` applied to each text alone."""
    r, length, h = hidden.shape
    flat = hidden.astype(jnp.float32).reshape(r * length, h)
    slots = packing.first.shape[0]
    text = packing.token_text.reshape(-1)
    count = jnp.maximum(jax.ops.segment_sum(jnp.ones_like(text, jnp.float32), text, slots + 1)[:slots, None], 1e-9)
    total = lambda x: jax.ops.segment_sum(x, text, slots + 1)[:slots]  # noqa: E731
    outs = []
    for mode in modes:
        if mode == "cls":
            outs.append(flat[packing.first])
        elif mode == "lasttoken":
            outs.append(flat[packing.last])
        elif mode == "max":
            outs.append(jnp.maximum(jax.ops.segment_max(flat, text, slots + 1)[:slots], -1e9))
        elif mode == "mean":
            outs.append(total(flat) / count)
        elif mode == "mean_sqrt_len_tokens":
            outs.append(total(flat) / jnp.sqrt(count))
        elif mode == "weightedmean":  # weights 1, 2, ... by position in the text, as `pool` under right padding
            w = (layers.segment_positions(packing.segment_ids).reshape(-1, 1) + 1).astype(jnp.float32)
            outs.append(total(flat * w) / jnp.maximum(total(w), 1e-9))
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
        pooled = self.pooled_dim
        main = self.dim
        for d in spec.matryoshka_dims:
            if d == main or (spec.matryoshka_mode == "slice" and d > main):
                raise ValueError(f"Matryoshka dim {d} must differ from (and, sliced, be below) the main dim {main}")
        heads = spec.matryoshka_dims if spec.matryoshka_mode == "heads" else ()
        self.matryoshka = nnx.List([layers.linear(pooled, d, rngs, jnp.float32) for d in heads])

    @property
    def pooled_dim(self) -> int:
        """Width of the pooled vector, which Dense layers and Matryoshka heads read."""
        return self.encoder.hidden_size * len(self.spec.pooling)

    @property
    def dim(self) -> int:
        return self.spec.dense[-1].out_features if self.spec.dense else self.pooled_dim

    @property
    def dims(self) -> tuple[int, ...]:
        """Every output dimension, the main one first."""
        return (self.dim, *self.spec.matryoshka_dims)

    def _pooled_and_main(self, input_ids, attention_mask, token_type_ids, pool_mask, dropout_key, packing):
        if packing is None:
            hidden = self.encoder(input_ids, attention_mask, token_type_ids, dropout_key=dropout_key)
            pooled = pool(hidden, attention_mask if pool_mask is None else pool_mask, self.spec.pooling)
        else:
            hidden = self.encoder(input_ids, attention_mask, token_type_ids, dropout_key=dropout_key,
                                  segment_ids=packing.segment_ids)
            pooled = pool_packed(hidden, packing, self.spec.pooling)
        x = pooled
        for spec, layer in zip(self.spec.dense, self.dense):
            x = layer(x)
            if spec.activation != "identity":
                x = layers.activation(spec.activation)(x)
        return pooled, x

    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array, token_type_ids: jax.Array | None = None,
                 pool_mask: jax.Array | None = None, dropout_key: jax.Array | None = None,
                 packing: Packing | None = None) -> jax.Array:
        """float32[B, D] for B rows of one text each, or float32[N, D] for N packed texts (`packing`; then
        pool_mask is unused: Packing.token_text says which tokens pool)."""
        _, x = self._pooled_and_main(input_ids, attention_mask, token_type_ids, pool_mask, dropout_key, packing)
        return l2_normalize(x) if self.spec.normalize else x

    def embed_all(self, input_ids: jax.Array, attention_mask: jax.Array, token_type_ids: jax.Array | None = None,
                  pool_mask: jax.Array | None = None, dropout_key: jax.Array | None = None,
                  packing: Packing | None = None) -> dict[int, jax.Array]:
        """{dim: float32[B or N, dim]} for the main output and every Matryoshka dim, from one encoder pass."""
        pooled, x = self._pooled_and_main(input_ids, attention_mask, token_type_ids, pool_mask, dropout_key,
                                          packing)
        finish = l2_normalize if self.spec.normalize else (lambda v: v)
        out = {self.dim: finish(x)}
        if self.spec.matryoshka_mode == "slice":
            out.update({d: finish(x[:, :d]) for d in self.spec.matryoshka_dims})
        else:
            out.update({d: finish(head(pooled)) for d, head in zip(self.spec.matryoshka_dims, self.matryoshka)})
        return out


def carried_matryoshka_heads(spec: EmbedderSpec, matryoshka_dims: tuple[int, ...],
                             matryoshka_mode: str) -> tuple[int, ...]:
    """Indices into `matryoshka_dims` of the heads `with_heads` takes over from a model that already has a head
    of that dim (an imported Stella-style export): both sides must be separate heads, which map from the pooled
    vector and so stay valid whatever main head is added. Without this, continuing to train an exported model
    with the config that made it would silently restart its trained Matryoshka heads."""
    if spec.matryoshka_mode != "heads" or matryoshka_mode != "heads":
        return ()
    return tuple(i for i, d in enumerate(matryoshka_dims) if d in spec.matryoshka_dims)


def with_heads(model: Embedder, head_dim: int = 0, matryoshka_dims: tuple[int, ...] = (),
               matryoshka_mode: str = "heads", seed: int = 0, head_init: str = "normal") -> Embedder:
    """The same encoder and existing Dense layers, plus a new normalized linear head to `head_dim` (if > 0) and
    Matryoshka outputs. Matryoshka heads the model already has for a requested dim are kept
    (`carried_matryoshka_heads`); new layers are randomly initialized from `seed`; existing parameters are shared.

    head_init "orthogonal" starts each new layer as a semi-orthogonal map with zero bias. A 384 → 768 head then
    gives exactly the student's own cosines, so distillation starts from the student's retrieval quality instead
    of from a random projection that stage 1 must first fit to the teacher (which, at small data scale, costs
    more than it returns)."""
    if head_init not in ("normal", "orthogonal", "principal"):
        raise ValueError(f"head_init must be normal, orthogonal or principal, got {head_init!r}")
    spec = model.spec
    dense = spec.dense
    if head_dim:
        in_features = model.dim
        dense = dense + (DenseSpec(in_features, head_dim),)
    new_spec = dataclasses.replace(spec, dense=dense, normalize=spec.normalize or bool(head_dim),
                                   matryoshka_dims=tuple(matryoshka_dims), matryoshka_mode=matryoshka_mode)
    new = Embedder(model.encoder, new_spec, rngs=nnx.Rngs(seed))
    for old_layer, new_layer in zip(model.dense, new.dense):
        nnx.update(new_layer, nnx.state(old_layer))
    carried = carried_matryoshka_heads(spec, new_spec.matryoshka_dims, matryoshka_mode)
    for i in carried:
        old_index = spec.matryoshka_dims.index(new_spec.matryoshka_dims[i])
        nnx.update(new.matryoshka[i], nnx.state(model.matryoshka[old_index]))
    if head_init != "normal":  # principal: narrow heads are set later from data (principal_head_init)
        fresh = list(new.dense)[len(model.dense):] + [h for i, h in enumerate(new.matryoshka) if i not in carried]
        keys = jax.random.split(jax.random.key(seed), max(len(fresh), 1))
        for key, layer in zip(keys, fresh):
            kernel = layer.kernel[...]
            layer.kernel[...] = jax.nn.initializers.orthogonal()(key, kernel.shape, kernel.dtype)
            if layer.bias is not None:
                layer.bias[...] = jnp.zeros_like(layer.bias[...])
    return new

