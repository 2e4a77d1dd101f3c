"""The file-format vocabulary every reader and writer of model directories shares: JSON and safetensors files,
dtype casts, the sentence-transformers Dense folder, and the two tables that translate sentence-transformers'
names (pooling flags, torch activation classes) to ours and back. One table each, read both ways, so import and
export cannot drift apart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
from safetensors.numpy import save_file

from jaxretrieval.errors import InputError
from jaxretrieval.models.embedder import POOLING_MODES

DTYPES = ("float32", "bfloat16")

# our pooling mode -> sentence-transformers' Pooling config flag, in its concatenation order
POOLING_FLAGS = {"cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens",
                 "mean": "pooling_mode_mean_tokens", "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens",
                 "weightedmean": "pooling_mode_weightedmean_tokens", "lasttoken": "pooling_mode_lasttoken"}
POOLING_MODE_OF_FLAG = {flag: mode for mode, flag in POOLING_FLAGS.items()}
assert tuple(POOLING_FLAGS) == POOLING_MODES, "the Embedder pools in sentence-transformers' order"

# our activation name -> the torch class path a sentence-transformers Dense config names
ACTIVATION_CLASSES = {"identity": "torch.nn.modules.linear.Identity", "tanh": "torch.nn.modules.activation.Tanh",
                      "relu": "torch.nn.modules.activation.ReLU", "gelu": "torch.nn.modules.activation.GELU",
                      "silu": "torch.nn.modules.activation.SiLU"}
ACTIVATION_OF_CLASS = {path: name for name, path in ACTIVATION_CLASSES.items()}


def read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise InputError("file not found", path) from None
    except json.JSONDecodeError as e:
        raise InputError(f"invalid JSON ({e.msg})", path, e.lineno) from None


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


def cast_tensors(tensors: dict[str, np.ndarray], dtype: str) -> dict[str, np.ndarray]:
    """Floating-point tensors to `dtype` (one of DTYPES); integer tensors unchanged."""
    target = np.float32 if dtype == "float32" else ml_dtypes.bfloat16
    return {k: np.asarray(v, target) if v.dtype.kind == "f" else v for k, v in tensors.items()}


def save_safetensors(path: Path, tensors: dict[str, np.ndarray], dtype: str) -> None:
    """Written with the metadata transformers expects of a PyTorch checkpoint."""
    save_file(cast_tensors(tensors, dtype), str(path), metadata={"format": "pt"})


def write_dense_folder(folder: Path, weight: np.ndarray, bias: np.ndarray | None, activation: str, dtype: str,
                       use_residual: bool | None = None) -> None:
    """A sentence-transformers (or PyLate, which adds `use_residual`) Dense module: config.json and
    model.safetensors with `linear.weight` float[out, in] and `linear.bias`."""
    config = {"in_features": int(weight.shape[1]), "out_features": int(weight.shape[0]), "bias": bias is not None,
              "activation_function": ACTIVATION_CLASSES[activation]}
    if use_residual is not None:
        config["use_residual"] = use_residual
    write_json(folder / "config.json", config)
    tensors = {"linear.weight": np.ascontiguousarray(weight)}
    if bias is not None:
        tensors["linear.bias"] = bias
    save_safetensors(folder / "model.safetensors", tensors, dtype)

