"""Device mesh and shardings. `jax.jit` with explicit in/out shardings over this mesh is our pjit.

Axes: `data` (pure data parallelism) and `fsdp` (batch *and* parameters split). The global batch is sharded
over both axes; a parameter is sharded on `fsdp` by the first name rule that matches it and whose leading
dimension divides evenly, and replicated otherwise.
"""

from __future__ import annotations

import re

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxretrieval.config import MeshConfig
from jaxretrieval.errors import InputError
from jaxretrieval.models.params import param_name

BATCH_AXES = ("data", "fsdp")
# (regex on the dotted parameter path, spec). Embedding tables and dense kernels shard their first dimension.
PARAM_RULES: list[tuple[str, P]] = [
    (r"(^|\.)embedding$", P("fsdp", None)),
    (r"(^|\.)kernel$", P("fsdp", None)),
]


def make_mesh(cfg: MeshConfig, devices=None) -> Mesh:
    """data=-1 takes every device not on fsdp; explicit sizes may use fewer devices than exist (the first ones)."""
    devices = list(devices if devices is not None else jax.devices())
    n = len(devices)
    data = cfg.data if cfg.data > 0 else n // cfg.fsdp
    if data < 1 or data * cfg.fsdp > n or (cfg.data <= 0 and data * cfg.fsdp != n):
        raise InputError(f"mesh data={data} x fsdp={cfg.fsdp} does not fit the {n} available devices",
                         "config", field="mesh")
    used = np.array(devices[: data * cfg.fsdp]).reshape(data, cfg.fsdp)
    return Mesh(used, ("data", "fsdp"), axis_types=(AxisType.Auto,) * 2)


def data_parallel_size(mesh: Mesh) -> int:
    return mesh.shape["data"] * mesh.shape["fsdp"]


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
    return NamedSharding(mesh, P(BATCH_AXES, *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def param_sharding(path: str, shape: tuple[int, ...], mesh: Mesh) -> NamedSharding:
    fsdp = mesh.shape["fsdp"]
    for pattern, spec in PARAM_RULES:
        if re.search(pattern, path) and len(shape) == len(spec) and shape[0] % fsdp == 0:
            return NamedSharding(mesh, spec)
    return replicated(mesh)


def tree_shardings(tree, mesh: Mesh):
    """Shardings for a pytree of parameters (or of optimizer state shaped like them)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, x: param_sharding(param_name(path), tuple(np.shape(x)), mesh), tree)
