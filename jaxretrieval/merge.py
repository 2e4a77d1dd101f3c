"""`jaxretrieval merge A B [...] --weights ... --out DIR`: a weighted average of compatible models' parameters
(models/merge.py), exported like a trained model. Each input is whatever the door opens (a run, a checkpoint, a
sentence-transformers, PyLate, cross-encoder or Hugging Face directory), so a fine-tune is merged with its base
by naming both. LoRA adapters are folded into their kernels first: averaging A and B apart would not average the
weights they stand for."""

from __future__ import annotations

from pathlib import Path

from jaxretrieval.convert.export import check_export_args, export
from jaxretrieval.door import open_model
from jaxretrieval.errors import InputError
from jaxretrieval.models.lora import merge_lora
from jaxretrieval.models.merge import average_params, normalized_weights
from jaxretrieval.models.params import flat_params, set_flat_params


def merge_models(paths: list[str], weights: list[float] | None, out: str, fmt: str, dtype: str = "float32",
                 overwrite: bool = False) -> Path:
    """Open every model, average their parameters with `weights` (equal when None), and export the result with
    the first model's tokenizer, heads and settings. Models of different kinds, or with different parameter
    names or shapes, are refused in one line naming the model."""
    check_export_args(fmt, dtype, out, overwrite)
    normalized_weights(weights, len(paths))  # a wrong count fails before any model is read
    bundles = [open_model(p) for p in paths]
    for p, b in zip(paths[1:], bundles[1:]):
        if b.kind != bundles[0].kind:
            raise InputError(f"is a {b.kind}, {paths[0]} a {bundles[0].kind}: only models of one kind merge", p)
    for b in bundles:
        merge_lora(b.model)
    merged = average_params([flat_params(b.model) for b in bundles], weights, names=list(paths))
    first = bundles[0]
    set_flat_params(first.model, merged)
    first.trained = None  # the first model's training record no longer describes these weights
    return export(first, out, fmt, dtype, overwrite=overwrite)
