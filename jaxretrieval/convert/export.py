"""Export to PyTorch serving formats: a Hugging Face model directory, or a sentence-transformers directory
(Transformer + Pooling + Dense* + Normalize, prompts) that `SentenceTransformer(DIR)` loads with our numbers.

Parameter names go back through each family's HF name table (the same table import uses), so import → export →
import is the identity. Tensors of the source checkpoint that the encoder does not use (e.g. BERT's pooler) are
carried over unchanged, so `AutoModel.from_pretrained` finds every weight it expects. Everything is written to a
temporary directory beside the target and renamed into place at the end: an interrupted export leaves nothing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from jaxretrieval.convert.hf_import import family_of, read_hf_config, read_hf_weights
from jaxretrieval.convert.st_import import LoadedEmbedder, load_embedder, transformer_dir_of
from jaxretrieval.errors import InputError
from jaxretrieval.models.embedder import DenseSpec
from jaxretrieval.models.families import Family
from jaxretrieval.models.params import flat_params

FORMATS = ("sentence-transformers", "hf", "pylate", "cross-encoder")
DTYPES = ("float32", "bfloat16")
_ACTIVATION_CLASSES = {"identity": "torch.nn.modules.linear.Identity", "tanh": "torch.nn.modules.activation.Tanh",
                       "relu": "torch.nn.modules.activation.ReLU", "gelu": "torch.nn.modules.activation.GELU",
                       "silu": "torch.nn.modules.activation.SiLU"}
_POOLING_FLAGS = {"cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens",
                  "mean": "pooling_mode_mean_tokens", "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens",
                  "weightedmean": "pooling_mode_weightedmean_tokens", "lasttoken": "pooling_mode_lasttoken"}


def hf_tensors(encoder_params: dict[str, np.ndarray], family: Family) -> dict[str, np.ndarray]:
    """Our flat encoder parameters → {HF name (no task prefix): array}, inverting the family's name table."""
    rules = [(re.compile("^" + re.escape(ours).replace(r"\{i\}", r"(\d+)") + "$"), hf, tf)
             for hf, ours, tf in family.hf_name_table]
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


@dataclasses.dataclass
class ExportSource:
    loaded: LoadedEmbedder
    description: str  # what was exported, for logs


def is_cross_encoder_dir(path: Path) -> bool:
    """An HF *ForSequenceClassification directory (a reranker), not a sentence-transformers embedder."""
    cfg = path / "config.json"
    if not cfg.exists() or (path / "modules.json").exists():
        return False
    return any(a.endswith("ForSequenceClassification") for a in read_hf_config(path).get("architectures") or [])


def load_export_source(path: str | os.PathLike) -> ExportSource:
    """A run directory (newest checkpoint), one checkpoint (RUN/checkpoints/STEP) or a model directory."""
    from jaxretrieval.config import load_config
    from jaxretrieval.train.checkpoint import find_checkpoint
    from jaxretrieval.train.model_setup import build_model, load_checkpoint_params

    from jaxretrieval.convert.colbert_io import is_pylate_dir, load_colbert

    p = Path(path)
    found = find_checkpoint(p)
    if found is None:
        if is_pylate_dir(p):
            return ExportSource(load_colbert(p), str(p))
        if is_cross_encoder_dir(p):
            from jaxretrieval.convert.reranker_io import load_reranker

            return ExportSource(load_reranker(p), str(p))
        if (p / "config.json").exists() or (p / "modules.json").exists():
            return ExportSource(load_embedder(p), str(p))
        raise InputError("no checkpoint here: expected a run directory, RUN/checkpoints/STEP or a model directory",
                         p)
    run_dir, step = found
    config_path = run_dir / "config.yaml"
    if not config_path.exists():
        raise InputError("run directory lacks config.yaml (which names the model it started from)", run_dir)
    cfg = load_config(config_path)
    loaded = build_model(cfg, initialize=False)  # the checkpoint below replaces every parameter
    load_checkpoint_params(loaded.model, run_dir, step, require_all=True)
    return ExportSource(loaded, f"{run_dir} step {step}")


def _cast(tensors: dict[str, np.ndarray], dtype: str) -> dict[str, np.ndarray]:
    if dtype == "float32":
        return {k: np.asarray(v, np.float32) if v.dtype.kind == "f" else v for k, v in tensors.items()}
    import ml_dtypes

    return {k: np.asarray(v, ml_dtypes.bfloat16) if v.dtype.kind == "f" else v for k, v in tensors.items()}


def _save_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save_file

    save_file(tensors, str(path), metadata={"format": "pt"})


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


def _write_transformer(model, hf_tokenizer, source_root: Path, max_length: int, out: Path, dtype: str) -> None:
    """config.json, model.safetensors and tokenizer files of the encoder (`model.encoder`)."""
    source_dir = transformer_dir_of(source_root)
    hf_config = read_hf_config(source_dir)
    family = family_of(hf_config, source_dir / "config.json")
    encoder = {k.removeprefix("encoder."): v for k, v in flat_params(model).items() if k.startswith("encoder.")}
    ours = hf_tensors(encoder, family)
    extras = {}  # source tensors the encoder does not use (pooler, ...), names stripped of task prefixes
    for name, value in read_hf_weights(source_dir).items():
        bare = next((name[len(p):] for p in family.hf_prefixes if name.startswith(p)), name)
        if bare not in ours:
            extras[bare] = value
    _save_safetensors(out / "model.safetensors", _cast({**extras, **ours}, dtype))
    config = dict(hf_config)
    config["dtype"] = dtype
    config.pop("torch_dtype", None)
    _write_json(out / "config.json", config)
    hf_tokenizer.model_max_length = max_length
    hf_tokenizer.save_pretrained(str(out))


def _write_dense(folder: Path, dense: DenseSpec, params: dict[str, np.ndarray], prefix: str, dtype: str) -> None:
    _write_json(folder / "config.json", {"in_features": dense.in_features, "out_features": dense.out_features,
                                         "bias": dense.bias,
                                         "activation_function": _ACTIVATION_CLASSES[dense.activation]})
    tensors = {"linear.weight": np.ascontiguousarray(params[f"{prefix}.kernel"].T)}
    if dense.bias:
        tensors["linear.bias"] = params[f"{prefix}.bias"]
    _save_safetensors(folder / "model.safetensors", _cast(tensors, dtype))


def _write_sentence_transformers(loaded: LoadedEmbedder, out: Path, dtype: str) -> None:
    spec = loaded.model.spec
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]
    _write_json(out / "sentence_bert_config.json", {"max_seq_length": spec.max_length,
                                                    "do_lower_case": loaded.tokenizer.do_lower_case})
    pooling = {"word_embedding_dimension": loaded.model.encoder.hidden_size,
               **{flag: mode in spec.pooling for mode, flag in _POOLING_FLAGS.items()},
               "include_prompt": spec.include_prompt}
    if list(spec.pooling) != [m for m in _POOLING_FLAGS if m in spec.pooling]:
        raise ValueError(f"pooling {spec.pooling} is not in sentence-transformers' concatenation order")
    _write_json(out / "1_Pooling" / "config.json", pooling)
    modules.append({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"})
    params = flat_params(loaded.model)
    first_dense = len(modules)
    heads = spec.matryoshka_dims if spec.matryoshka_mode == "heads" else ()
    for i, dense in enumerate(spec.dense):
        idx = len(modules)
        folder = f"{idx}_Dense" if len(spec.dense) == 1 and not heads else f"{idx}_Dense_{dense.out_features}"
        _write_dense(out / folder, dense, params, f"dense.{i}", dtype)
        modules.append({"idx": idx, "name": str(idx), "path": folder, "type": "sentence_transformers.models.Dense"})
    # Matryoshka heads map the pooled vector to their dim, as Stella v5 ships them: one `<idx>_Dense_<dim>` folder
    # each, beside the main head. modules.json uses the main output; point its Dense entry at another folder (or
    # see matryoshka.json) to serve a smaller dimension.
    pooled = loaded.model.pooled_dim
    for i, dim in enumerate(heads):
        _write_dense(out / f"{first_dense}_Dense_{dim}", DenseSpec(pooled, dim), params, f"matryoshka.{i}", dtype)
    if spec.matryoshka_dims:
        _write_json(out / "matryoshka.json", {
            "mode": spec.matryoshka_mode, "main_dim": loaded.model.dim,
            "dims": {str(d): f"{first_dense}_Dense_{d}" if heads else f"first {d} values of the main output"
                     for d in spec.matryoshka_dims}})
    if spec.normalize:
        idx = len(modules)
        (out / f"{idx}_Normalize").mkdir()
        modules.append({"idx": idx, "name": str(idx), "path": f"{idx}_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
    _write_json(out / "modules.json", modules)
    prompts = {k: v for k, v in (("query", spec.query_prompt), ("document", spec.doc_prompt)) if v}
    _write_json(out / "config_sentence_transformers.json",
                {"prompts": prompts, "default_prompt_name": None, "similarity_fn_name": "cosine",
                 "model_type": "SentenceTransformer"})


def export(source: str | os.PathLike, out_dir: str | os.PathLike, fmt: str = "sentence-transformers",
           dtype: str = "float32", overwrite: bool = False) -> Path:
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}", "command line",
                         field="format")
    if dtype not in DTYPES:
        raise InputError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}", "command line", field="dtype")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise InputError("output exists and is not empty (pass --overwrite to replace it)", out)
    from jaxretrieval.convert.colbert_io import LoadedColBERT, write_pylate
    from jaxretrieval.convert.reranker_io import LoadedReranker, write_cross_encoder
    from jaxretrieval.models.lora import merge_lora

    loaded = load_export_source(source).loaded
    merge_lora(loaded.model)  # LoRA runs ship plain weights: kernel + scale·A·B
    is_colbert = isinstance(loaded, LoadedColBERT)
    is_reranker = isinstance(loaded, LoadedReranker)
    if is_reranker != (fmt == "cross-encoder"):
        raise InputError("a reranker exports as --format cross-encoder" if is_reranker else
                         "--format cross-encoder is for rerankers", "command line", field="format")
    if is_colbert and fmt == "sentence-transformers":
        raise InputError("a ColBERT model exports as --format pylate (or hf for the bare encoder)", "command line",
                         field="format")
    if not is_colbert and fmt == "pylate":
        raise InputError("--format pylate is for ColBERT models; this is a dense embedder", "command line",
                         field="format")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if is_reranker:
            write_cross_encoder(loaded, tmp, dtype)
        elif is_colbert:
            _write_transformer(loaded.model, loaded.tokenizer.text.tokenizer, loaded.path,
                               loaded.tokenizer.doc_length, tmp, dtype)
            if fmt == "pylate":
                write_pylate(loaded, tmp, dtype)
        else:
            _write_transformer(loaded.model, loaded.tokenizer.tokenizer, loaded.path, loaded.model.spec.max_length,
                               tmp, dtype)
            if fmt == "sentence-transformers":
                _write_sentence_transformers(loaded, tmp, dtype)
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
