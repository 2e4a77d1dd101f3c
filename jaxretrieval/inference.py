"""Texts → vectors with an Embedder: packed (or length-bucketed) batches through one jit-compiled forward."""

from __future__ import annotations

import functools
import sys
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm import tqdm

from jaxretrieval.bundles import LoadedEmbedder
from jaxretrieval.data.packing import PackedBatch
from jaxretrieval.models.embedder import Packing


@functools.partial(jax.jit, static_argnums=(0, 1))
def _embed(graphdef, all_dims, state, input_ids, attention_mask, token_type_ids, pool_mask, packing=None):
    model = nnx.merge(graphdef, state)
    if all_dims:
        return model.embed_all(input_ids, attention_mask, token_type_ids, pool_mask=pool_mask, packing=packing)
    return {model.dim: model(input_ids, attention_mask, token_type_ids, pool_mask=pool_mask, packing=packing)}


def make_forward(model: nnx.Module, all_dims: bool = False):
    """Pure forward (batch arrays) → {dim: embeddings}. The jit cache is keyed by the model's structure, so
    evaluating the same model again during training (new parameter values, same shapes) compiles nothing new."""
    graphdef, state = nnx.split(model)
    return lambda *arrays, packing=None: _embed(graphdef, all_dims, state, *arrays, packing)


def packing_arrays(batch: PackedBatch) -> Packing:
    """The device-side layout of a host PackedBatch."""
    return Packing(jnp.asarray(batch.segment_ids), jnp.asarray(batch.token_text), jnp.asarray(batch.first),
                   jnp.asarray(batch.last))


def encode_texts(loaded: LoadedEmbedder, texts: Sequence[str], kind: str = "doc", batch_size: int = 32,
                 progress: bool = False, desc: str = "encode", all_dims: bool = False,
                 buckets: Sequence[int] | None = None, packed: bool | None = None
                 ) -> np.ndarray | dict[int, np.ndarray]:
    """float32[len(texts), dim], rows in input order; with all_dims, {dim: that array} for the main output and
    every Matryoshka output, from one pass. Batches of `batch_size` rows: texts packed several to a row, or sorted
    by length and padded to a `buckets` length (default: the backend's choice,
    data.tokenize.inference_length_buckets); packed=None takes whichever computes clearly fewer tokens
    (TextTokenizer.encoded_batches)."""
    model = loaded.model
    dims = model.dims if all_dims else (model.dim,)
    forward = make_forward(model, all_dims)
    out = {d: np.zeros((len(texts), d), np.float32) for d in dims}
    bar = tqdm(total=len(texts), desc=desc, unit="text", file=sys.stderr, disable=not progress, smoothing=0.1)
    pending = None  # overlap: tokenize/pad the next batch while the device runs this one
    for batch in loaded.tokenizer.encoded_batches(texts, batch_size, kind, buckets, packed):
        arrays = (jnp.asarray(batch.input_ids), jnp.asarray(batch.attention_mask), jnp.asarray(batch.token_type_ids))
        if isinstance(batch, PackedBatch):
            vecs = forward(*arrays, None, packing=packing_arrays(batch))
        else:
            vecs = forward(*arrays, jnp.asarray(batch.pool_mask))
        if pending is not None:
            _store(out, *pending, bar)
        pending = (vecs, batch.index)
    if pending is not None:
        _store(out, *pending, bar)
    bar.close()
    return out if all_dims else out[model.dim]


def _store(out: dict[int, np.ndarray], vecs: dict[int, jax.Array], index: np.ndarray, bar) -> None:
    valid = index >= 0
    for d, v in vecs.items():
        out[d][index[valid]] = np.asarray(v)[valid]
    bar.update(int(valid.sum()))
