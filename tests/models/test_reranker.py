"""The cross-encoder's head follows its family's *ForSequenceClassification head: one logit per pair, padding
invariant, and a name table entry for every head parameter."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxretrieval.models.params import param_shapes
from jaxretrieval.models.reranker import HEAD_KINDS, HEAD_NAME_TABLE, CrossEncoder
from tiny_encoders import tiny_bert_encoder

IDS = jnp.asarray(np.random.default_rng(0).integers(2, 50, (3, 6)), jnp.int32)


@pytest.mark.parametrize("family", ["bert", "roberta", "qwen2"])
def test_one_logit_per_pair_and_every_head_parameter_is_named(family):
    model = CrossEncoder(tiny_bert_encoder(), family, dropout_rate=0.0)
    scores = model(IDS, jnp.ones_like(IDS), jnp.zeros_like(IDS))
    assert scores.shape == (3,) and scores.dtype == jnp.float32
    head = {k for k in param_shapes(model) if not k.startswith("encoder.")}
    assert head == {ours for ours, _, _ in HEAD_NAME_TABLE[HEAD_KINDS[family]]}


def test_the_first_token_heads_ignore_padding():
    model = CrossEncoder(tiny_bert_encoder(), "bert", dropout_rate=0.0)
    mask = jnp.ones_like(IDS)
    padded = jnp.concatenate([IDS, jnp.zeros((3, 2), jnp.int32)], axis=1)
    padded_mask = jnp.concatenate([mask, jnp.zeros((3, 2), jnp.int32)], axis=1)
    np.testing.assert_allclose(np.asarray(model(padded, padded_mask)), np.asarray(model(IDS, mask)), atol=1e-5)
    with pytest.raises(ValueError, match="no reranker head"):
        CrossEncoder(tiny_bert_encoder(), "t5")
