"""Export a bundle to a PyTorch serving format: a Hugging Face model directory, a sentence-transformers directory
(dense embedders), a PyLate directory (ColBERT) or a cross-encoder directory (rerankers).

The whole directory is written beside the target and renamed into place at the end, so an interrupted export
leaves nothing. Which format suits which kind of model is decided here, once, before anything is written.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from jaxretrieval.bundles import COLBERT, EMBEDDER, RERANKER, Bundle
from jaxretrieval.convert.cross_encoder_format import write_cross_encoder
from jaxretrieval.convert.formats import DTYPES
from jaxretrieval.convert.hf_format import write_hf_encoder
from jaxretrieval.convert.model_card import model_card
from jaxretrieval.convert.pylate_format import write_pylate
from jaxretrieval.convert.st_format import transformer_dir_of, write_sentence_transformers
from jaxretrieval.errors import InputError
from jaxretrieval.files import atomic_directory, require_free_output
from jaxretrieval.models.lora import merge_lora
from jaxretrieval.models.params import flat_params

# format -> the kinds of model it can hold
FORMATS = {"sentence-transformers": (EMBEDDER,), "hf": (EMBEDDER, COLBERT), "pylate": (COLBERT,),
           "cross-encoder": (RERANKER,)}
_SUGGESTION = {EMBEDDER: "sentence-transformers (or hf)", COLBERT: "pylate (or hf for the bare encoder)",
               RERANKER: "cross-encoder"}


def check_export_args(fmt: str, dtype: str, out_dir: str | os.PathLike, overwrite: bool) -> Path:
    """The checks that need no model, made before one is loaded."""
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}", "command line",
                         field="format")
    if dtype not in DTYPES:
        raise InputError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}", "command line", field="dtype")
    return require_free_output(out_dir, overwrite)


def export(bundle: Bundle, out_dir: str | os.PathLike, fmt: str = "sentence-transformers", dtype: str = "float32",
           overwrite: bool = False, allow_nonfinite: bool = False) -> Path:
    """Write `bundle` to `out_dir` as `fmt` with floating-point tensors in `dtype`. LoRA adapters are merged into
    plain weights first (kernel + scale·A·B), so the output needs no adapter support. A model with NaN or Inf
    weights (a diverged run) is refused unless allow_nonfinite: serving it would only return NaN."""
    out = check_export_args(fmt, dtype, out_dir, overwrite)
    if bundle.kind not in FORMATS[fmt]:
        raise InputError(f"--format {fmt} cannot hold a {bundle.kind}; a {bundle.kind} exports as "
                         f"--format {_SUGGESTION[bundle.kind]}", "command line", field="format")
    merge_lora(bundle.model)
    bad = [name for name, value in flat_params(bundle.model).items()
           if value.dtype.kind == "f" and not np.isfinite(value).all()]
    if bad and not allow_nonfinite:
        raise InputError(f"{len(bad)} parameters hold NaN or Inf, e.g. {bad[:3]}: this model diverged (pass "
                         f"--allow-nonfinite to export it anyway)", field="--allow-nonfinite")
    with atomic_directory(out) as tmp:
        if bundle.kind == RERANKER:
            write_cross_encoder(bundle, tmp, dtype)
        elif bundle.kind == COLBERT:
            write_hf_encoder(bundle.model, bundle.tokenizer.text.tokenizer, transformer_dir_of(bundle.path),
                             bundle.tokenizer.doc_length, tmp, dtype)
            if fmt == "pylate":
                write_pylate(bundle, tmp, dtype)
        else:
            write_hf_encoder(bundle.model, bundle.tokenizer.tokenizer, transformer_dir_of(bundle.path),
                             bundle.model.spec.max_length, tmp, dtype)
            if fmt == "sentence-transformers":
                write_sentence_transformers(bundle, tmp, dtype)
        (tmp / "README.md").write_text(model_card(bundle, fmt))
    return out
