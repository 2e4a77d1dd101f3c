"""The Embedder mirrors a sentence-transformers pipeline: pooling modes by their formulas, Dense layers, Normalize,
and Matryoshka outputs (separate heads or prefix slices) from one encoder pass."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from jaxretrieval.models.embedder import (DenseSpec, Embedder, EmbedderSpec, carried_matryoshka_heads,
                                          last_token_index, pool, with_heads)
from tiny_encoders import tiny_bert_encoder

IDS = jnp.asarray(np.random.default_rng(0).integers(2, 50, (2, 5)), jnp.int32)
MASK = jnp.asarray([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], jnp.int32)


def test_pooling_formulas():
    h = np.random.default_rng(1).normal(size=(2, 5, 3)).astype(np.float32)
    m = np.asarray(MASK)
    np.testing.assert_allclose(pool(h, MASK, ("cls",)), h[:, 0], atol=1e-6)
    mean = np.stack([h[i][m[i] == 1].mean(0) for i in range(2)])
    np.testing.assert_allclose(pool(h, MASK, ("mean",)), mean, atol=1e-6)
    np.testing.assert_allclose(pool(h, MASK, ("max",)), np.stack([h[i][m[i] == 1].max(0) for i in range(2)]),
                               atol=1e-6)
    np.testing.assert_allclose(pool(h, MASK, ("lasttoken",)), h[[0, 1], [2, 4]], atol=1e-6)
    assert pool(h, MASK, ("cls", "mean")).shape == (2, 6)
    left = jnp.asarray([[0, 0, 1, 1, 1]], jnp.int32)
    assert int(last_token_index(left)[0]) == 4 and int(last_token_index(MASK)[0]) == 2


def test_dense_normalize_and_matryoshka_outputs():
    spec = EmbedderSpec(dense=(DenseSpec(16, 12, activation="tanh"),), normalize=True)
    model = Embedder(tiny_bert_encoder(), spec)
    assert (model.pooled_dim, model.dim, model.dims) == (16, 12, (12,))
    out = np.asarray(model(IDS, MASK))
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    heads = with_heads(model, matryoshka_dims=(8, 4))
    every = heads.embed_all(IDS, MASK)
    assert sorted(every) == [4, 8, 12]
    np.testing.assert_allclose(np.asarray(every[12]), out, atol=1e-6)  # existing layers are shared
    sliced = with_heads(model, matryoshka_dims=(6,), matryoshka_mode="slice").embed_all(IDS, MASK)
    unit = np.asarray(out[:, :6]) / np.linalg.norm(np.asarray(out[:, :6]), axis=1, keepdims=True)
    raw = np.asarray(sliced[6])
    np.testing.assert_allclose(raw, unit, atol=1e-5)  # the first dims of the main output, normalized again


def test_orthogonal_head_wider_than_the_input_keeps_cosines():
    model = Embedder(tiny_bert_encoder(), EmbedderSpec())
    wide = with_heads(model, head_dim=32, head_init="orthogonal")
    a, b = np.asarray(model(IDS, MASK)), np.asarray(wide(IDS, MASK))
    cos = lambda x: (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (x / np.linalg.norm(x, axis=1, keepdims=True)).T
    np.testing.assert_allclose(cos(a), cos(b), atol=1e-5)


def test_heads_a_model_already_has_are_carried():
    spec = EmbedderSpec(matryoshka_dims=(8, 4))
    assert carried_matryoshka_heads(spec, (4, 2), "heads") == (0,)
    assert carried_matryoshka_heads(spec, (4,), "slice") == ()
    assert carried_matryoshka_heads(dataclasses.replace(spec, matryoshka_mode="slice"), (4,), "heads") == ()
    with pytest.raises(ValueError, match="pooling"):
        EmbedderSpec(pooling=("median",))
