"""Flat parameter names: one spelling from nnx paths and JAX key paths alike; selection patterns; abstract models
that must get every value."""

import jax
import numpy as np
import pytest
from flax import nnx

from jaxretrieval.errors import InputError
from jaxretrieval.models.params import (assert_concrete, flat_params, param_name, param_shapes, select_params,
                                        set_flat_params)
from tiny_encoders import tiny_bert_encoder


class Head(nnx.Module):
    def __init__(self):
        self.encoder = tiny_bert_encoder()
        self.dense = nnx.Linear(16, 4, rngs=nnx.Rngs(0))


def test_nnx_paths_and_jax_key_paths_give_the_same_names():
    model = Head()
    from_nnx = sorted(param_name(path) for path, _ in nnx.to_flat_state(nnx.state(model, nnx.Param)))
    from_jax = sorted(param_name(path) for path, _ in
                      jax.tree_util.tree_flatten_with_path(nnx.state(model, nnx.Param))[0])
    assert from_nnx == from_jax == sorted(flat_params(model))
    assert "encoder.layers.1.value.kernel" in from_nnx  # a module named "value" keeps its name
    assert "dense.kernel" in from_nnx


def test_select_params_patterns():
    model = Head()
    names = set(param_shapes(model))
    assert select_params(model, "all") == names
    assert select_params(model, "head") == {"dense.kernel", "dense.bias"}
    last = select_params(model, "encoder.layers[-1:]")
    assert last and all(n.startswith("encoder.layers.1.") for n in last)
    assert select_params(model, "dense.*,encoder.layers[:1]") == {"dense.kernel", "dense.bias"} | {
        n for n in names if n.startswith("encoder.layers.0.")}
    with pytest.raises(InputError, match=r"\[init_fresh\].*'nothing\*'"):
        select_params(model, "nothing*", field="init_fresh")


def test_model_built_abstractly_must_get_every_value():
    """load_hf_encoder builds the encoder with nnx.eval_shape and fills it from the checkpoint; a variable left
    without a value is an error there, not a crash at the first forward."""
    layer = nnx.eval_shape(lambda: nnx.Linear(2, 3, rngs=nnx.Rngs(0)))
    assert param_shapes(layer) == {"kernel": (2, 3), "bias": (3,)}
    set_flat_params(layer, {"kernel": np.ones((2, 3))})
    with pytest.raises(ValueError, match="bias"):
        assert_concrete(layer)
    set_flat_params(layer, {"bias": np.zeros(3)})
    assert_concrete(layer)
    np.testing.assert_allclose(np.asarray(layer(np.ones((1, 2), np.float32))), [[2.0, 2.0, 2.0]])
    with pytest.raises(KeyError):
        set_flat_params(layer, {"nope": np.zeros(3)})
    with pytest.raises(ValueError, match="shape"):
        set_flat_params(layer, {"bias": np.zeros(4)})
