"""Texts → vectors with an Embedder: packed (or length-bucketed) batches through one jit-compiled forward."""

from __future__ import annotations

import functools
import sys
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
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


def make_forward(model: nnx.Module, all_dims: bool = False, replicated: NamedSharding | None = None):
    """Pure forward (batch arrays) → {dim: embeddings}. The jit cache is keyed by the model's structure, so
    evaluating the same model again during training (new parameter values, same shapes) compiles nothing new.
    With `replicated`, the parameters are copied to every device of its mesh first."""
    graphdef, state = nnx.split(model)
    if replicated is not None:
        state = jax.device_put(state, replicated)
    return lambda *arrays, packing=None: _embed(graphdef, all_dims, state, *arrays, packing)


def local_data_parallel() -> tuple[NamedSharding, NamedSharding] | None:
    """(rows split over this process's devices, replicated) shardings when it has several devices, else None: a
    batch's rows then go one share per device (data parallel), so encode, eval, mine and score use every local
    accelerator. Only this process's devices take part, so hosts of a pod encode independently."""
    devices = jax.local_devices()
    if len(devices) == 1:
        return None
    mesh = Mesh(np.array(devices), ("data",))
    return NamedSharding(mesh, P("data")), NamedSharding(mesh, P())


def packing_arrays(batch: PackedBatch, put=jnp.asarray) -> Packing:
    """The device-side layout of a host PackedBatch."""
    return Packing(put(batch.segment_ids), put(batch.token_text), put(batch.first), put(batch.last))


def encode_texts(loaded: LoadedEmbedder, texts: Sequence[str], kind: str = "doc", batch_size: int = 32,
                 progress: bool = False, desc: str = "encode", all_dims: bool = False,
                 buckets: Sequence[int] | None = None, packed: bool | None = None
                 ) -> np.ndarray | dict[int, np.ndarray]:
    """float32[len(texts), dim], rows in input order; with all_dims, {dim: that array} for the main output and
    every Matryoshka output, from one pass. Batches of `batch_size` rows: texts packed several to a row, or sorted
    by length and padded to a `buckets` length (default: the backend's choice,
    data.tokenize.inference_length_buckets); packed=None takes whichever computes clearly fewer tokens
    (TextTokenizer.encoded_batches). A bundle with a `backend` (e.g. torch on CPU) is encoded by it instead."""
    model = loaded.model
    if loaded.backend is not None:
        if all_dims:
            raise ValueError("another backend serves the main output only; all_dims needs the jax backend")
        return loaded.backend.encode(texts, kind, batch_size, progress)
    dims = model.dims if all_dims else (model.dim,)
    placement = local_data_parallel()
    if placement is None:
        forward, put = make_forward(model, all_dims), jnp.asarray
    else:  # rows per batch rounded up to a multiple of the devices
        forward, put = make_forward(model, all_dims, placement[1]), lambda x: jax.device_put(x, placement[0])
        batch_size = -(-batch_size // len(jax.local_devices())) * len(jax.local_devices())
    out = {d: np.zeros((len(texts), d), np.float32) for d in dims}
    bar = tqdm(total=len(texts), desc=desc, unit="text", file=sys.stderr, disable=not progress, smoothing=0.1)
    pending = None  # overlap: tokenize/pad the next batch while the device runs this one
    for batch in loaded.tokenizer.encoded_batches(texts, batch_size, kind, buckets, packed):
        arrays = (put(batch.input_ids), put(batch.attention_mask), put(batch.token_type_ids))
        if isinstance(batch, PackedBatch):
            vecs = forward(*arrays, None, packing=packing_arrays(batch, put))
        else:
            vecs = forward(*arrays, put(batch.pool_mask))
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
