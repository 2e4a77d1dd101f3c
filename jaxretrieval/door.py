"""The one door from a path a user names to a model bundle.

Every command that takes a model (`encode`, `eval`, `mine`, `score`, `export`, a reranker's first stage) opens it
here, so "what kind of directory is this?" is answered in one place:

    run directory           config.yaml and checkpoints/: the model of its newest checkpoint
    RUN/checkpoints/STEP    the model of that checkpoint
    PyLate directory        a ColBERT model (config_sentence_transformers.json says MaxSim)
    cross-encoder directory an HF *ForSequenceClassification model (a reranker)
    sentence-transformers   modules.json: a dense embedder
    Hugging Face directory  config.json: a dense embedder over the bare encoder (mean pooling unless told)

Any of them may be local or under gs://. A run is read where it lies (Orbax restores from GCS directly); a model
directory under gs:// is downloaded once into the local cache (files.local_copy), since tokenizers and safetensors
read local files.
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax.numpy as jnp

from jaxretrieval.bundles import EMBEDDER, Bundle
from jaxretrieval.config import config_to_dict, load_config
from jaxretrieval.convert.cross_encoder_format import is_cross_encoder_dir, load_reranker
from jaxretrieval.convert.pylate_format import is_pylate_dir, load_colbert
from jaxretrieval.convert.st_format import load_embedder
from jaxretrieval.convert.torch_backend import TorchEmbedder
from jaxretrieval.errors import InputError
from jaxretrieval.files import UPath, is_remote, resolve_model_path, upath
from jaxretrieval.train.checkpoint import find_checkpoint
from jaxretrieval.train.model_setup import build_model, load_checkpoint_params
from jaxretrieval.train.run_log import eval_side

RUN, PYLATE, CROSS_ENCODER, SENTENCE_TRANSFORMERS, HUGGING_FACE = (
    "run", "pylate", "cross-encoder", "sentence-transformers", "hf")


def directory_kind(path: str | os.PathLike) -> str:
    """One of RUN (a run directory or one of its checkpoints), PYLATE, CROSS_ENCODER, SENTENCE_TRANSFORMERS,
    HUGGING_FACE; an InputError for a path that is none of them."""
    return _locate(path)[0]


COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def open_model(path: str | os.PathLike, pooling: str | tuple[str, ...] | None = None,
               max_length: int | None = None, compute_dtype: str | None = None, backend: str = "jax") -> Bundle:
    """The bundle behind `path` (see the module docstring). `pooling` ("cls", "mean,max", ...) and `max_length`
    override what an embedder directory says; a run's model is rebuilt exactly as its config trained it, in
    `compute_dtype` if one is given (float32 | bfloat16: the dtype of the encoder's matrix products; parameters
    stay float32 and pooled vectors come out float32 either way). backend "torch" has a dense embedder's vectors
    computed by sentence-transformers (convert/torch_backend.py)."""
    if compute_dtype is not None and compute_dtype not in COMPUTE_DTYPES:
        raise InputError(f"compute dtype must be one of {sorted(COMPUTE_DTYPES)}, got {compute_dtype!r}",
                         field="--compute-dtype")
    if backend not in ("jax", "torch"):
        raise InputError(f"backend must be jax or torch, got {backend!r}", field="--backend")
    bundle = _open_bundle(path, pooling, max_length, compute_dtype)
    if backend == "torch":
        if bundle.kind != EMBEDDER:
            raise InputError(f"--backend torch serves dense embedders; this is a {bundle.kind}", field="--backend")
        bundle.backend = TorchEmbedder(bundle, compute_dtype or "float32")
    return bundle


def _open_bundle(path, pooling, max_length, compute_dtype) -> Bundle:
    kind, p, checkpoint = _locate(path)
    if kind == RUN:
        return _open_run(*checkpoint, compute_dtype)
    dtype = COMPUTE_DTYPES[compute_dtype or "float32"]
    if kind == PYLATE:
        return load_colbert(p, dtype=dtype)
    if kind == CROSS_ENCODER:
        return load_reranker(p, dtype=dtype)
    pooling = tuple(pooling.split(",")) if isinstance(pooling, str) else pooling
    try:
        return load_embedder(p, pooling=pooling, max_length=max_length, dtype=dtype)
    except ValueError as e:
        if isinstance(e, InputError):
            raise
        raise InputError(str(e), p) from None


def _locate(path: str | os.PathLike) -> tuple[str, UPath, tuple[UPath, int] | None]:
    """(kind, where to read it, (run directory, step) for a run): the path is looked at once, and a gs:// model
    directory fetched once."""
    where = upath(path) if is_remote(path) else upath(resolve_model_path(path))  # a gs:// run is read in place
    if not where.exists():
        raise InputError("model directory does not exist", where)
    if not where.is_dir():
        raise InputError("expected a model or run directory, got a file", where)
    checkpoint = find_checkpoint(where)
    if checkpoint is not None:
        return RUN, where, checkpoint
    p = resolve_model_path(path)  # a model directory: local from here on
    if is_pylate_dir(p):
        return PYLATE, p, None
    if is_cross_encoder_dir(p):
        return CROSS_ENCODER, p, None
    if (p / "modules.json").exists():
        return SENTENCE_TRANSFORMERS, p, None
    if (p / "config.json").exists():
        return HUGGING_FACE, p, None
    raise InputError("no checkpoint here, nor a model: expected a model directory (config.json or modules.json), "
                     "a run directory or RUN/checkpoints/STEP", p)


def _open_run(run_dir: UPath, step: int, compute_dtype: str | None = None) -> Bundle:
    config_path = run_dir / "config.yaml"
    if not config_path.exists():
        raise InputError("run directory lacks config.yaml (which names the model it started from)", run_dir)
    cfg = load_config(config_path)
    if compute_dtype is not None:
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, compute_dtype=compute_dtype))
    loaded = build_model(cfg, initialize=False)  # the checkpoint below replaces every parameter
    load_checkpoint_params(loaded.model, run_dir, step, require_all=True)
    loaded.trained = {"config": config_to_dict(cfg), "step": step, "eval": _last_eval(run_dir, step)}
    return loaded


def _last_eval(run_dir: UPath, step: int) -> dict | None:
    """{"step", "metrics"} of the run's newest evaluation at or before `step` (metrics.jsonl), or None."""
    log = run_dir / "metrics.jsonl"
    if not log.exists():
        return None
    found = None
    for line in log.read_text().splitlines():
        record = json.loads(line) if line.strip() else {}
        # the test side's metrics: eval/ (no dev split) or test/ (the one evaluation of a run that chose on dev)
        metrics = {k.split("/", 1)[1]: v for k, v in record.items() if eval_side(k) in ("eval", "test")}
        if metrics and record.get("step", 0) <= step:
            found = {"step": record["step"], "metrics": metrics}
    return found
