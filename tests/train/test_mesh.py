"""The device mesh and sharding rules: data x fsdp over the 8 simulated devices; kernels and embedding tables split
on fsdp when their first dimension divides, everything else replicated."""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from jaxretrieval.config import MeshConfig
from jaxretrieval.errors import InputError
from jaxretrieval.train.mesh import (batch_sharding, data_parallel_size, make_mesh, param_sharding, replicated,
                                     tree_shardings)


def test_mesh_shapes():
    assert jax.device_count() == 8
    mesh = make_mesh(MeshConfig())
    assert dict(mesh.shape) == {"data": 8, "fsdp": 1} and data_parallel_size(mesh) == 8
    mesh = make_mesh(MeshConfig(data=2, fsdp=4))
    assert dict(mesh.shape) == {"data": 2, "fsdp": 4}
    assert dict(make_mesh(MeshConfig(data=1)).shape) == {"data": 1, "fsdp": 1}  # fewer devices than exist
    with pytest.raises(InputError, match=r"\[mesh\]"):
        make_mesh(MeshConfig(data=3, fsdp=4))
    with pytest.raises(InputError, match=r"\[mesh\]"):
        make_mesh(MeshConfig(fsdp=3))


def test_parameter_and_batch_shardings():
    mesh = make_mesh(MeshConfig(data=2, fsdp=4))
    assert param_sharding("encoder.layers.0.query.kernel", (16, 16), mesh).spec[0] == "fsdp"
    assert param_sharding("encoder.embeddings.word_embeddings.embedding", (40, 16), mesh).spec[0] == "fsdp"
    assert param_sharding("encoder.layers.0.query.kernel", (6, 16), mesh) == replicated(mesh)  # 6 % 4 != 0
    assert param_sharding("encoder.layers.0.query.bias", (16,), mesh) == replicated(mesh)
    assert batch_sharding(mesh, 3).spec == jax.sharding.PartitionSpec(("data", "fsdp"), None, None)
    state = nnx.state(nnx.Linear(8, 4, rngs=nnx.Rngs(0)), nnx.Param)
    shardings = tree_shardings(state, mesh)
    placed = jax.device_put(state, shardings)
    kernel = placed["kernel"].get_value() if hasattr(placed["kernel"], "get_value") else placed["kernel"]
    assert isinstance(kernel, jax.Array) and kernel.sharding.spec[0] == "fsdp"
    assert jnp.allclose(kernel, state["kernel"].get_value())
