"""Parameters as a flat {"a.b.0.c": array} mapping: the common currency of import, export and tests."""

from __future__ import annotations

import fnmatch
import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxretrieval.errors import InputError


def param_name(path) -> str:
    """The dotted name of a parameter ("encoder.layers.0.attention.query.kernel"), from an nnx state path (strings
    and ints) or a JAX key path (DictKey, GetAttrKey, SequenceKey entries, ending in the Variable's `.value`): the
    one spelling that checkpoints, freezing, init_fresh patterns, sharding rules and weight decay all use."""
    parts = [str(getattr(p, "key", getattr(p, "name", getattr(p, "idx", p)))) for p in path]
    if len(parts) > 1 and parts[-1] == "value":
        parts.pop()
    return ".".join(parts)


def flat_params(model: nnx.Module) -> dict[str, np.ndarray]:
    """Every nnx.Param of `model` as a NumPy array keyed by its dotted path."""
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    return {param_name(path): np.asarray(var.get_value()) for path, var in flat}


def param_shapes(model: nnx.Module) -> dict[str, tuple[int, ...]]:
    """Shape of every nnx.Param by dotted path; works on a model built with nnx.eval_shape (no values yet)."""
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    return {param_name(path): tuple(var.get_value().shape) for path, var in flat}


_LAYER_SLICE = re.compile(r"^encoder\.layers\[(-?\d*):(-?\d*)\]$")


def select_params(model: nnx.Module, patterns: str, field: str = "optimizer.trainable") -> set[str]:
    """Dotted parameter names selected by comma-separated patterns, the language of `optimizer.trainable` and
    `init_fresh` (see config.py): "all", "head" (outside the encoder), "lora", "encoder.layers[-3:]", or a glob.
    A pattern that selects nothing is an error naming `field`, so a typo cannot silently freeze (or restart) the
    whole model. Reads names and shapes only, so a large model is not copied to the host."""
    names = list(param_shapes(model))
    num_layers = len(getattr(getattr(model, "encoder", None), "layers", []))
    selected: set[str] = set()
    for pattern in (p.strip() for p in patterns.split(",") if p.strip()):
        if pattern == "all":
            hits = set(names)
        elif pattern == "head":
            hits = {n for n in names if not n.startswith("encoder.")}
        elif pattern == "lora":
            hits = {n for n in names if n.rsplit(".", 1)[-1] in ("lora_a", "lora_b")}
        elif m := _LAYER_SLICE.match(pattern):
            start, stop = (int(x) if x else None for x in m.groups())
            layers = range(num_layers)[slice(start, stop)]
            hits = {n for n in names for i in layers if n.startswith(f"encoder.layers.{i}.")}
        else:
            hits = {n for n in names if fnmatch.fnmatchcase(n, pattern)}
        if not hits:
            raise InputError(f"pattern {pattern!r} matches no parameter (e.g. {names[:2]})", "config", field=field)
        selected |= hits
    if not selected:
        raise InputError("no parameters selected", "config", field=field)
    return selected


def assert_concrete(model: nnx.Module) -> None:
    """Raise if any state of a model built with nnx.eval_shape was left without a value."""
    abstract = [param_name(path) for path, var in nnx.to_flat_state(nnx.state(model))
                if isinstance(var.get_value(), jax.ShapeDtypeStruct)]
    if abstract:
        raise ValueError(f"{len(abstract)} model variables were never given values, e.g. {abstract[:3]}")


def set_flat_params(model: nnx.Module, values: dict[str, np.ndarray]) -> None:
    """Overwrite parameters in place. Every key must exist with the same shape; missing keys stay untouched."""
    state = nnx.state(model, nnx.Param)
    known = {param_name(path): var for path, var in nnx.to_flat_state(state)}
    for key, value in values.items():
        if key not in known:
            raise KeyError(f"no parameter named {key!r}")
        var = known[key]
        old = var.get_value()
        if tuple(old.shape) != tuple(np.shape(value)):
            raise ValueError(f"parameter {key}: shape {tuple(np.shape(value))} does not match {tuple(old.shape)}")
        var.set_value(jnp.asarray(value, dtype=old.dtype))
    nnx.update(model, state)
