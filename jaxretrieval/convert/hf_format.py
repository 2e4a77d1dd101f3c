"""Hugging Face encoder directories (config.json + safetensors or pytorch_model.bin) to a Flax encoder, and our
parameter names back to Hugging Face's.

Names go through the family's table in both directions (`map_hf_names` and its inverse `hf_tensors`, side by
side), so import -> export -> import is the identity. On import every parameter of our module must be found,
otherwise the import fails naming what is missing (a silently random layer is the worst possible parity bug).
"""

from __future__ import annotations

import contextlib
import contextvars

import logging
import os
import re
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors.numpy import load_file

from jaxretrieval.convert.formats import read_json, save_safetensors, write_json
from jaxretrieval.errors import InputError
from jaxretrieval.models.families import FAMILIES, Family
from jaxretrieval.models.params import assert_concrete, flat_params, param_shapes, set_flat_params

log = logging.getLogger(__name__)

_LEGACY_RENAMES = ((".gamma", ".weight"), (".beta", ".bias"))


def model_dir(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputError("model directory does not exist", p)
    if not p.is_dir():
        raise InputError("expected a model directory, got a file", p)
    if not (p / "config.json").exists():
        raise InputError("no config.json: not a Hugging Face model directory", p)
    return p


def read_hf_config(path: str | os.PathLike) -> dict[str, Any]:
    return read_json(model_dir(path) / "config.json")


def family_of(hf_config: dict[str, Any], config_path: Path) -> Family:
    model_type = hf_config.get("model_type")
    if model_type not in FAMILIES:
        raise InputError(f"unsupported model_type {model_type!r}; supported: {', '.join(sorted(FAMILIES))}",
                         config_path, field="model_type")
    return FAMILIES[model_type]


_SHAPES_ONLY = contextvars.ContextVar("shapes_only", default=False)


@contextlib.contextmanager
def shapes_only():
    """Encoders loaded inside keep abstract parameters (shapes and dtypes, no weights read): what an ahead-of-time
    compile needs, from a directory that may hold only config.json and a tokenizer (a model too big for here)."""
    token = _SHAPES_ONLY.set(True)
    try:
        yield
    finally:
        _SHAPES_ONLY.reset(token)


def read_hf_weights(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All tensors of a checkpoint as float32/int NumPy arrays; safetensors (single or sharded) preferred."""
    d = Path(path)
    single, index = d / "model.safetensors", d / "model.safetensors.index.json"
    if single.exists():
        return _to_numpy_float32(load_file(str(single)))
    if index.exists():
        out: dict[str, np.ndarray] = {}
        for shard in sorted(set(read_json(index)["weight_map"].values())):
            out.update(load_file(str(d / shard)))
        return _to_numpy_float32(out)
    bin_path = d / "pytorch_model.bin"
    if bin_path.exists():
        try:
            import torch
        except ImportError:
            raise InputError("reading pytorch_model.bin needs torch installed (or convert it to safetensors)",
                             bin_path) from None
        state = torch.load(bin_path, map_location="cpu", weights_only=True)
        return {k: v.float().numpy() if v.is_floating_point() else v.numpy() for k, v in state.items()}
    if _SHAPES_ONLY.get():  # a directory of config and tokenizer only: every parameter keeps its fresh shape
        return {}
    raise InputError("no model.safetensors, model.safetensors.index.json or pytorch_model.bin", d)


def _to_numpy_float32(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    # safetensors.numpy cannot hold bfloat16 natively; ml_dtypes arrays convert cleanly with astype.
    return {k: v.astype(np.float32) if v.dtype.kind == "f" or "bfloat16" in str(v.dtype) else v
            for k, v in tensors.items()}


def _name_pattern(template: str) -> re.Pattern:
    """A table name with `{i}` for the layer index, as a regex capturing that index."""
    return re.compile("^" + re.escape(template).replace(r"\{i\}", r"(\d+)") + "$")


def map_hf_names(tensors: dict[str, np.ndarray], family: Family) -> tuple[dict[str, np.ndarray], list[str]]:
    """HF tensors → {our path: array}. Returns the mapped params and the HF names no table entry matched."""
    regexes = [(_name_pattern(hf), ours, tf) for hf, ours, tf in family.hf_name_table]
    mapped: dict[str, np.ndarray] = {}
    unmatched: list[str] = []
    for name, value in tensors.items():
        key = name
        for prefix in family.hf_prefixes:
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
        for old, new in _LEGACY_RENAMES:
            if key.endswith(old):
                key = key[: -len(old)] + new
        for rx, ours, transform in regexes:
            m = rx.match(key)
            if m:
                target = ours.replace("{i}", m.group(1)) if m.groups() else ours
                mapped[target] = value.T if transform == "T" else value
                break
        else:
            unmatched.append(name)
    return mapped, unmatched


def hf_tensors(encoder_params: dict[str, np.ndarray], family: Family) -> dict[str, np.ndarray]:
    """Our flat encoder parameters -> {HF name (no task prefix): array}: `map_hf_names` inverted."""
    rules = [(_name_pattern(ours), hf, tf) for hf, ours, tf in family.hf_name_table]
    out: dict[str, np.ndarray] = {}
    for key, value in encoder_params.items():
        for rx, hf, transform in rules:
            m = rx.match(key)
            if m:
                name = hf.replace("{i}", m.group(1)) if m.groups() else hf
                out[name] = np.ascontiguousarray(value.T if transform == "T" else value)
                break
        else:
            raise ValueError(f"parameter {key} has no Hugging Face name in the {family.name} table")
    return out


def load_hf_encoder(path: str | os.PathLike, dtype=jnp.float32) -> tuple[nnx.Module, dict[str, Any]]:
    """Encoder with the directory's weights (or only their shapes, inside `shapes_only`). Returns (encoder, the
    raw HF config dict)."""
    d = model_dir(path)
    hf_config = read_hf_config(d)
    family = family_of(hf_config, d / "config.json")
    try:
        cfg = family.config_from_hf(hf_config)
    except (TypeError, ValueError) as e:
        raise InputError(str(e), d / "config.json") from None
    # Built abstractly (shapes only), since every parameter is then read from the checkpoint: a random init runs
    # one small op per parameter shape, each compiled on first use, which costs seconds for nothing.
    encoder = nnx.eval_shape(lambda: family.encoder_cls(cfg, dtype=dtype, rngs=nnx.Rngs(0)))
    if _SHAPES_ONLY.get():
        return encoder, hf_config
    mapped, unmatched = map_hf_names(read_hf_weights(d), family)
    expected = param_shapes(encoder)
    missing = sorted(set(expected) - set(mapped))
    if missing:
        raise InputError(f"checkpoint lacks {len(missing)} parameters, e.g. {missing[:3]}", d)
    for key in mapped:
        if key in expected and expected[key] != mapped[key].shape:
            raise InputError(f"parameter {key}: checkpoint shape {mapped[key].shape} != config shape "
                             f"{expected[key]}", d)
    if unmatched:
        log.debug("ignored %d checkpoint tensors not used by the encoder: %s", len(unmatched), unmatched[:5])
    set_flat_params(encoder, {k: v for k, v in mapped.items() if k in expected})
    assert_concrete(encoder)
    return encoder, hf_config


def write_hf_encoder(model: nnx.Module, hf_tokenizer, source_dir: Path, max_length: int, out: Path,
                     dtype: str) -> None:
    """config.json, model.safetensors and tokenizer files of `model.encoder`, in the layout of `source_dir` (the
    directory the encoder was imported from). Tensors of the source checkpoint that the encoder does not use (e.g.
    BERT's pooler) are carried over unchanged, so `AutoModel.from_pretrained` finds every weight it expects."""
    hf_config = read_hf_config(source_dir)
    family = family_of(hf_config, source_dir / "config.json")
    encoder = {k.removeprefix("encoder."): v for k, v in flat_params(model).items() if k.startswith("encoder.")}
    ours = hf_tensors(encoder, family)
    extras = {}  # source tensors the encoder does not use (pooler, ...), names stripped of task prefixes
    for name, value in read_hf_weights(source_dir).items():
        bare = next((name[len(p):] for p in family.hf_prefixes if name.startswith(p)), name)
        if bare not in ours:
            extras[bare] = value
    save_safetensors(out / "model.safetensors", {**extras, **ours}, dtype)
    config = dict(hf_config)
    config["dtype"] = dtype
    config.pop("torch_dtype", None)
    write_json(out / "config.json", config)
    hf_tokenizer.model_max_length = max_length
    hf_tokenizer.save_pretrained(str(out))
