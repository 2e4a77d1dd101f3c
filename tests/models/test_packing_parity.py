"""Packed rows (several texts per row, block-diagonal attention, positions and pooling per text) give the padded
path's embeddings and parameter gradients, within 1e-5, for every encoder family and every pooling mode."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hf_tiny import tiny_bert, tiny_family
from jaxretrieval.convert.hf_format import load_hf_encoder
from jaxretrieval.data.packing import packed_batches
from jaxretrieval.data.tokenize import pad_ragged
from jaxretrieval.models.embedder import Embedder, EmbedderSpec, Packing

FAMILIES = ["bert", "xlm-roberta", "mpnet", "qwen2"]
POOLINGS = {"bert": ("cls", "mean"), "xlm-roberta": ("max", "weightedmean"), "mpnet": ("mean_sqrt_len_tokens",),
            "qwen2": ("lasttoken", "mean")}


def _model(tmp_path, family):
    path = tiny_bert(tmp_path / "m") if family == "bert" else tiny_family(tmp_path / "m", family)
    encoder, hf = load_hf_encoder(path)
    return Embedder(encoder, EmbedderSpec(pooling=POOLINGS[family])), hf


def _texts(hf, n=11, seed=0):
    rng = np.random.default_rng(seed)
    low = 5 if hf["model_type"] != "qwen2" else 3
    lengths = rng.integers(1, 20, size=n)
    return [list(rng.integers(low, 40, size=int(k))) for k in lengths]


def _first_kernel(family):
    return "q_proj" if family == "qwen2" else "query"


def _padded(texts, pad_id):
    ids, mask = pad_ragged(texts, len(texts), max(map(len, texts)), pad_id)
    return jnp.asarray(ids), jnp.asarray(mask)


def _packed(texts, pad_id, rows=3, row_length=24):
    batches = list(packed_batches(texts, None, rows, row_length, pad_id))
    assert len(batches) == 2  # 11 texts of up to 19 tokens need more than 3 rows of 24
    return batches


def _arrays(batch):
    packing = Packing(*(jnp.asarray(a) for a in (batch.segment_ids, batch.token_text, batch.first, batch.last)))
    return jnp.asarray(batch.input_ids), jnp.asarray(batch.attention_mask), packing


@pytest.mark.parametrize("family", FAMILIES)
def test_packed_embeddings_and_gradients_match_padded(tmp_path, family):
    model, hf = _model(tmp_path, family)
    pad = int(hf.get("pad_token_id") or 0)
    texts = _texts(hf)
    ids, mask = _padded(texts, pad)
    batches = _packed(texts, pad)
    assert any((b.segment_ids.max(axis=1) > 1).any() for b in batches)  # some row really holds several texts
    weights = jnp.asarray(np.random.default_rng(1).normal(size=(len(texts), model.dim)), jnp.float32)
    graphdef, state = nnx.split(model)

    def padded_loss(state):
        return jnp.sum(nnx.merge(graphdef, state)(ids, mask) * weights)

    def packed_loss(state):
        total = 0.0
        for b in batches:
            vecs = nnx.merge(graphdef, state)(*_arrays(b)[:2], packing=_arrays(b)[2])
            real = b.index >= 0
            total = total + jnp.sum(vecs[np.flatnonzero(real)] * weights[b.index[real]])
        return total

    padded_vecs = np.asarray(model(ids, mask))
    packed_vecs = np.zeros_like(padded_vecs)
    for b in batches:
        real = b.index >= 0
        packed_vecs[b.index[real]] = np.asarray(model(*_arrays(b)[:2], packing=_arrays(b)[2]))[real]
    assert np.abs(packed_vecs - padded_vecs).max() <= 1e-5

    g_padded = jax.grad(padded_loss)(state)
    g_packed = jax.grad(packed_loss)(state)
    # relative to each parameter's largest gradient (float32 sums in another order differ by a few ulps), with a
    # floor for the attention key biases, whose gradient is zero but for rounding (softmax ignores a shift)
    excess = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max() - 1e-5 * jnp.abs(a).max() - 1e-8), g_padded, g_packed)
    assert max(jax.tree.leaves(excess)) <= 0, excess
    first_kernel = g_padded["encoder"]["layers"][0][_first_kernel(family)]["kernel"].get_value()
    assert float(jnp.abs(first_kernel).max()) > 1e-3  # not vacuous


@pytest.mark.parametrize("impl", ["per_example", "batched", "fused"])
def test_every_attention_path_keeps_texts_apart(tmp_path, monkeypatch, impl):
    monkeypatch.setenv("JAXRETRIEVAL_ATTENTION", impl)
    model, hf = _model(tmp_path, "qwen2")  # causal, grouped-query, rotary positions per text
    texts = _texts(hf, seed=3)
    ids, mask = _padded(texts, 0)
    padded_vecs = np.asarray(model(ids, mask))
    for b in _packed(texts, 0):
        real = b.index >= 0
        vecs = np.asarray(model(*_arrays(b)[:2], packing=_arrays(b)[2]))[real]
        assert np.abs(vecs - padded_vecs[b.index[real]]).max() <= 1e-5
