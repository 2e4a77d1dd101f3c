"""The ColBERT model: unit token vectors, zero where the vector mask is off, linear or residual-FFN projection."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxretrieval.models.colbert import ColBERT, ColBERTSpec
from tiny_encoders import tiny_bert_encoder

IDS = jnp.asarray(np.random.default_rng(0).integers(0, 50, (2, 6)), jnp.int32)
MASK = jnp.asarray([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], jnp.int32)


@pytest.mark.parametrize("projection", ["linear", "ffn"])
def test_vectors_are_unit_and_masked(projection):
    model = ColBERT(tiny_bert_encoder(), ColBERTSpec(dim=8, projection=projection))
    vectors_mask = MASK.at[1, 2].set(0)  # a skiplisted token: attended to, but no vector
    vecs, mask = model(IDS, MASK, vectors_mask)
    assert vecs.shape == (2, 6, 8) and model.dim == 8
    norms = np.linalg.norm(np.asarray(vecs), axis=-1)
    np.testing.assert_allclose(norms[np.asarray(vectors_mask) == 1], 1.0, rtol=1e-5)
    assert np.all(norms[np.asarray(vectors_mask) == 0] == 0)
    np.testing.assert_array_equal(np.asarray(mask), np.asarray(vectors_mask))


def test_spec_rejects_unknown_choices():
    with pytest.raises(ValueError, match="projection"):
        ColBERTSpec(projection="mlp")
    with pytest.raises(ValueError, match="reduce"):
        ColBERTSpec(reduce="max")
