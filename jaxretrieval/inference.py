"""Texts → vectors with an Embedder: length-bucketed batches through one jit-compiled forward."""

from __future__ import annotations

import functools
import sys
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxretrieval.convert.st_import import LoadedEmbedder


@functools.partial(jax.jit, static_argnums=0)
def _embed(graphdef, state, input_ids, attention_mask, token_type_ids, pool_mask):
    return nnx.merge(graphdef, state)(input_ids, attention_mask, token_type_ids, pool_mask=pool_mask)


def make_forward(model: nnx.Module):
    """Pure forward (batch arrays) → embeddings. The jit cache is keyed by the model's structure, so evaluating
    the same model again during training (new parameter values, same shapes) compiles nothing new."""
    graphdef, state = nnx.split(model)
    return lambda *arrays: _embed(graphdef, state, *arrays)


def encode_texts(loaded: LoadedEmbedder, texts: Sequence[str], kind: str = "doc", batch_size: int = 32,
                 progress: bool = False, desc: str = "encode") -> np.ndarray:
    """float32[len(texts), dim], rows in input order."""
    from tqdm import tqdm

    forward = make_forward(loaded.model)
    out = np.zeros((len(texts), loaded.model.dim), np.float32)
    bar = tqdm(total=len(texts), desc=desc, unit="text", file=sys.stderr, disable=not progress, smoothing=0.1)
    pending = None  # overlap: tokenize/pad the next batch while the device runs this one
    for batch in loaded.tokenizer.batches(texts, batch_size, kind):
        vecs = forward(jnp.asarray(batch.input_ids), jnp.asarray(batch.attention_mask),
                       jnp.asarray(batch.token_type_ids), jnp.asarray(batch.pool_mask))
        if pending is not None:
            _store(out, *pending, bar)
        pending = (vecs, batch.index)
    if pending is not None:
        _store(out, *pending, bar)
    bar.close()
    return out


def _store(out: np.ndarray, vecs: jax.Array, index: np.ndarray, bar) -> None:
    valid = index >= 0
    out[index[valid]] = np.asarray(vecs)[valid]
    bar.update(int(valid.sum()))
