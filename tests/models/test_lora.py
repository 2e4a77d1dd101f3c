"""LoRA adapters start as the base layer (B = 0), train a low-rank update, and merge back into a plain kernel."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxretrieval.models.lora import LoRALinear, add_lora, has_lora, merge_lora
from tiny_encoders import tiny_bert_encoder

X = jnp.asarray(np.random.default_rng(0).normal(size=(3, 7, 16)), jnp.float32)
IDS = jnp.asarray(np.random.default_rng(1).integers(0, 50, (2, 6)), jnp.int32)


def test_a_fresh_adapter_computes_the_base_layer():
    base = nnx.Linear(16, 8, rngs=nnx.Rngs(0))
    lora = LoRALinear(base, rank=4, alpha=8.0, rngs=nnx.Rngs(1))
    np.testing.assert_allclose(np.asarray(lora(X)), np.asarray(base(X)), atol=1e-6)
    assert lora.scale == 2.0 and lora.lora_a.shape == (16, 4) and lora.lora_b.shape == (4, 8)


def test_add_then_merge_keeps_the_function_and_the_names():
    encoder = tiny_bert_encoder()
    mask = jnp.ones_like(IDS)
    before = np.asarray(encoder(IDS, mask))
    assert add_lora(encoder, 2, 4.0, ("query", "value")) == 4  # 2 layers x 2 targets
    assert has_lora(encoder)
    layer = encoder.layers[0].query
    layer.lora_b.set_value(jnp.ones_like(layer.lora_b.get_value()) * 5.0)  # as if trained
    trained = np.asarray(encoder(IDS, mask))
    assert np.abs(trained - before).max() > 1e-3
    assert merge_lora(encoder) == 4 and not has_lora(encoder)
    assert isinstance(encoder.layers[0].query, nnx.Linear)
    np.testing.assert_allclose(np.asarray(encoder(IDS, mask)), trained, atol=1e-5)


def test_a_target_that_matches_nothing_is_an_error():
    with pytest.raises(ValueError, match="no linear layer"):
        add_lora(tiny_bert_encoder(), 2, 4.0, ("q_proj",))
    with pytest.raises(ValueError, match="rank"):
        add_lora(tiny_bert_encoder(), 0, 4.0, ("query",))
