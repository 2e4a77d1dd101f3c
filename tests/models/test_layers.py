"""The CPU per-example attention (hand-written backward) against the batched form and plain autodiff."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxretrieval.models import layers


def _inputs(seed, b=3, lq=7, lk=7, h=4, hkv=2, d=5):
    ks = jax.random.split(jax.random.key(seed), 5)
    q = jax.random.normal(ks[0], (b, lq, h, d))
    k = jax.random.normal(ks[1], (b, lk, hkv, d))
    v = jax.random.normal(ks[2], (b, lk, hkv, d))
    mask = jnp.arange(lk)[None, :] < jnp.array([lk, 3, 1])[:b, None]
    bias = jax.random.normal(ks[3], (1, h, lq, lk))
    d_out = jax.random.normal(ks[4], (b, lq, h, d))
    return q, k, v, mask, bias, d_out


@pytest.mark.parametrize("causal,use_bias", [(False, False), (True, False), (False, True), (True, True)])
def test_per_example_matches_batched_values_and_gradients(monkeypatch, causal, use_bias):
    q, k, v, mask, bias, d_out = _inputs(0)
    bias = bias if use_bias else None

    def loss(impl, q, k, v, bias):
        monkeypatch.setenv("JAXRETRIEVAL_ATTENTION", impl)
        return (layers.attention(q, k, v, mask, bias, causal=causal) * d_out).sum()

    for argnums in [(0, 1, 2, 3)] if use_bias else [(0, 1, 2)]:
        ref = jax.grad(lambda *a: loss("batched", *a), argnums)(q, k, v, bias)
        ours = jax.grad(lambda *a: loss("per_example", *a), argnums)(q, k, v, bias)
        for r, o in zip(ref, ours):
            np.testing.assert_allclose(np.asarray(o), np.asarray(r), atol=2e-5, rtol=2e-5)
    monkeypatch.setenv("JAXRETRIEVAL_ATTENTION", "per_example")
    out = layers.attention(q, k, v, mask, bias, causal=causal)
    monkeypatch.setenv("JAXRETRIEVAL_ATTENTION", "batched")
    np.testing.assert_allclose(out, layers.attention(q, k, v, mask, bias, causal=causal), atol=1e-5)


def test_dropout_backward_matches_autodiff_of_the_same_masks(monkeypatch):
    q, k, v, mask, _, d_out = _inputs(1, hkv=4)
    key, rate = jax.random.key(3), 0.3
    keys = jax.random.split(key, q.shape[0])

    def reference(q, k, v):  # same dropout masks, written with plain autodiff-able ops
        outs = []
        for i in range(q.shape[0]):
            p = layers._example_probs(q[i], k[i], mask[i], None, None, False) * layers.keep_mask(keys[i], rate,
                                                                                          (4, 7, 7))
            outs.append(jnp.einsum("hqk,khd->qhd", p, v[i]))
        return (jnp.stack(outs) * d_out).sum()

    monkeypatch.setenv("JAXRETRIEVAL_ATTENTION", "per_example")
    ours = jax.grad(lambda q, k, v: (layers.attention(q, k, v, mask, dropout_rate=rate, dropout_key=key)
                                     * d_out).sum(), (0, 1, 2))(q, k, v)
    ref = jax.grad(reference, (0, 1, 2))(q, k, v)
    for r, o in zip(ref, ours):
        np.testing.assert_allclose(np.asarray(o), np.asarray(r), atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("rate", [0.01, 0.1, 0.5])
def test_keep_mask_rate_and_scale(rate):
    mask = np.asarray(layers.keep_mask(jax.random.key(0), rate, (1000, 999)))
    assert len(np.unique(mask)) == 2 and mask.min() == 0 and abs(mask.max() - 1 / (1 - rate)) < 1e-4
    sigma = np.sqrt(rate * (1 - rate) / mask.size)
    assert abs((mask == 0).mean() - rate) < 5 * sigma
    assert np.asarray(layers.keep_mask(jax.random.key(0), 1.0, (3, 4))).max() == 0


def test_keep_masks_are_uncorrelated_across_keys_rows_and_columns():
    """The hash-based masks behave as independent draws: between keys that differ by one fold_in (consecutive
    steps), between neighbouring rows and columns, and between two masks of one key's split (layers)."""
    shape, rate = (64, 12, 32, 32), 0.1
    step_keys = [jax.random.fold_in(jax.random.key(7), i) for i in range(2)]
    masks = [np.asarray(layers.keep_mask(k, rate, shape)) == 0 for k in step_keys + list(jax.random.split(
        step_keys[0]))]
    tolerance = 6 * np.sqrt(rate * (1 - rate) / masks[0].size)

    def both_dropped(a, b):  # independent: rate²
        return (a & b).mean()

    for a, b in [(masks[0], masks[1]), (masks[2], masks[3]), (masks[0], masks[2]),
                 (masks[0][..., 1:], masks[0][..., :-1]), (masks[0][:, :, 1:], masks[0][:, :, :-1]),
                 (masks[0][1:], masks[0][:-1])]:
        assert abs(both_dropped(a, b) - rate * rate) < tolerance
    np.testing.assert_array_equal(masks[0], np.asarray(layers.keep_mask(step_keys[0], rate, shape)) == 0)


def test_dropout_on_a_batch_sharded_array_needs_no_communication():
    """Each device draws its own shard of the mask (no all-gather of a global mask), and the result equals the
    single-device one."""
    from jax.sharding import NamedSharding, PartitionSpec

    n = min(jax.device_count(), 8)
    sharding = NamedSharding(jax.make_mesh((n,), ("data",)), PartitionSpec("data"))
    x = jax.device_put(jnp.ones((2 * n, 4, 16, 16)), sharding)
    drop = jax.jit(lambda x, k: layers.dropout(x, 0.1, k), in_shardings=(sharding, None), out_shardings=sharding)
    hlo = drop.lower(x, jax.random.key(0)).compile().as_text()
    assert not any(op in hlo for op in ("all-gather", "all-to-all", "collective-permute", "all-reduce"))
    single = jax.jit(lambda x, k: layers.dropout(x, 0.1, k))(np.ones(x.shape, np.float32), jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(drop(x, jax.random.key(0))), np.asarray(single))


@pytest.mark.parametrize("remat", ["full", "dots"])
def test_recomputed_layers_give_the_same_gradients(remat):
    """model.remat changes what the backward keeps, not what it computes (with dropout on: the masks are keyed, so
    the recomputation draws the same ones)."""
    from flax import nnx

    from jaxretrieval.models.bert import BertConfig, BertEncoder

    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                     max_position_embeddings=32)
    ids = jnp.asarray(np.random.default_rng(0).integers(1, 50, (3, 9)), jnp.int32)
    mask = jnp.ones_like(ids).at[1, 6:].set(0)
    grads = {}
    for policy in ("none", remat):
        encoder = BertEncoder(cfg, rngs=nnx.Rngs(0))
        encoder.remat = policy
        graphdef, state = nnx.split(encoder)
        loss = lambda s: (nnx.merge(graphdef, s)(ids, mask, dropout_key=jax.random.key(1)) ** 2).sum()  # noqa: E731
        grads[policy] = jax.grad(loss)(state)
    diffs = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), grads["none"], grads[remat])
    assert max(jax.tree.leaves(diffs)) <= 1e-5
