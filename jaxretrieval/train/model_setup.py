"""The model a config describes: the directory's model for the task, plus new heads, LoRA adapters, and parameters
from a previous stage.

Training builds its model here, and so does opening a run directory later (export, evaluation), so a checkpoint
always meets the structure it was saved from.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import jax.numpy as jnp
import numpy as np

from jaxretrieval.bundles import Bundle, LoadedEmbedder
from jaxretrieval.config import TrainConfig
from jaxretrieval.convert.cross_encoder_format import load_reranker
from jaxretrieval.convert.pylate_format import load_colbert
from jaxretrieval.convert.st_format import load_embedder
from jaxretrieval.data.jsonl import read_texts
from jaxretrieval.data.shard_format import SAMPLE, is_prepared
from jaxretrieval.files import upath
from jaxretrieval.errors import InputError
from jaxretrieval.inference import encode_texts
from jaxretrieval.models.embedder import Embedder, carried_matryoshka_heads, with_heads
from jaxretrieval.models.lora import add_lora
from jaxretrieval.models.params import param_shapes, select_params, set_flat_params
from jaxretrieval.train.checkpoint import find_checkpoint, restore_params

log = logging.getLogger(__name__)

PRINCIPAL_SAMPLE = 2048  # training texts whose pooled vectors give head_init=principal its directions


def load_checkpoint_params(model, run_dir: os.PathLike, step: int, require_all: bool = False,
                           keep_fresh: frozenset[str] = frozenset()) -> list[str]:
    """Copy a checkpoint's parameters into `model` by name, except those in `keep_fresh` (their saved shape may
    differ too). Returns the names left as initialized: those the checkpoint lacked (new heads of a later stage)
    and `keep_fresh`. require_all makes any missing or unexpected name an error."""
    saved, _ = restore_params(run_dir, step)
    expected = param_shapes(model)  # names and shapes only: no host copy of the model
    missing = sorted(set(expected) - set(saved))
    unused = sorted(set(saved) - set(expected))
    if unused or (require_all and missing):
        raise InputError(f"checkpoint parameters do not match the configured model: missing {missing[:3]}, "
                         f"unexpected {unused[:3]}", run_dir / "checkpoints" / str(step))
    saved = {k: v for k, v in saved.items() if k not in keep_fresh}
    for key in saved:
        if tuple(saved[key].shape) != expected[key]:
            raise InputError(f"parameter {key}: checkpoint shape {saved[key].shape} != model shape "
                             f"{expected[key]}", run_dir / "checkpoints" / str(step))
    set_flat_params(model, saved)
    restarted = sorted(keep_fresh - set(missing))
    if missing or restarted:
        log.warning("init_from %s: %d parameters the checkpoint lacks start fresh (e.g. %s), and %d it has restart "
                    "by init_fresh (e.g. %s)", run_dir, len(missing), missing[:3], len(restarted), restarted[:3])
    return sorted(set(missing) | keep_fresh)


def build_model(cfg: TrainConfig, initialize: bool = True) -> Bundle:
    """The bundle of the config's task: a LoadedEmbedder for dense and distill, LoadedColBERT for colbert,
    LoadedReranker for reranker.

    initialize=False skips what only a training start needs (init_from, data-dependent head initialization): for
    callers that load a whole checkpoint over the result."""
    if cfg.task == "colbert":
        loaded = load_colbert(cfg.model.path, cfg.colbert, seed=cfg.seed, dtype=_compute_dtype(cfg))
        add_adapters_and_init_from(cfg, loaded.model, initialize)
        return loaded
    if cfg.task == "reranker":
        r = cfg.reranker
        loaded = load_reranker(cfg.model.path, r.max_length, r.query_format, r.doc_format, r.special_token,
                               seed=cfg.seed, dtype=_compute_dtype(cfg))
        add_adapters_and_init_from(cfg, loaded.model, initialize)
        return loaded
    return build_embedder(cfg, initialize)


def _compute_dtype(cfg: TrainConfig):
    return jnp.bfloat16 if cfg.model.compute_dtype == "bfloat16" else jnp.float32


def add_adapters_and_init_from(cfg: TrainConfig, model, initialize: bool = True) -> set[str] | None:
    """LoRA adapters on the encoder, then parameters from init_from (adapters first, so a LoRA run's checkpoint
    meets the structure it was saved from). Returns the parameter names init_from lacked (None: no init_from,
    everything is as built)."""
    m = cfg.model
    model.encoder.remat = m.remat
    if m.lora_rank:
        try:
            count = add_lora(model.encoder, m.lora_rank, m.lora_alpha, tuple(m.lora_targets), seed=cfg.seed)
        except ValueError as e:
            raise InputError(str(e), "config", field="model.lora_targets") from None
        log.info("LoRA rank %d on %d linear layers", m.lora_rank, count)
    return _init_from(cfg, model) if initialize else None


def _init_from(cfg: TrainConfig, model) -> set[str] | None:
    if not cfg.init_from:
        return None
    found = find_checkpoint(cfg.init_from)
    if found is None:
        raise InputError("init_from must be a run directory or RUN/checkpoints/STEP", cfg.init_from,
                         field="init_from")
    keep_fresh = frozenset(select_params(model, cfg.init_fresh, field="init_fresh") if cfg.init_fresh else ())
    return set(load_checkpoint_params(model, *found, keep_fresh=keep_fresh))


def build_embedder(cfg: TrainConfig, initialize: bool = True) -> LoadedEmbedder:
    m = cfg.model
    pooling = tuple(m.pooling.split(",")) if m.pooling else None
    loaded = load_embedder(m.path, pooling=pooling, max_length=m.max_length or None, dtype=_compute_dtype(cfg))
    carried: tuple[int, ...] = ()
    if m.head_dim or m.matryoshka_dims:
        carried = carried_matryoshka_heads(loaded.model.spec, tuple(m.matryoshka_dims), m.matryoshka_mode)
        if carried:
            log.info("Matryoshka heads %s: kept from %s", [m.matryoshka_dims[i] for i in carried], m.path)
        try:
            model = with_heads(loaded.model, m.head_dim, tuple(m.matryoshka_dims), m.matryoshka_mode, seed=cfg.seed,
                               head_init=m.head_init)
        except ValueError as e:
            raise InputError(str(e), "config", field="model.matryoshka_dims") from None
        loaded = dataclasses.replace(loaded, model=model)
    fresh = add_adapters_and_init_from(cfg, loaded.model, initialize)
    if initialize and m.head_init == "principal":
        _principal_heads(cfg, loaded, fresh, carried)
    return loaded


def _principal_heads(cfg: TrainConfig, loaded: LoadedEmbedder, fresh: set[str] | None,
                     carried: tuple[int, ...]) -> None:
    """Fresh Matryoshka heads narrower than the pooled vector start from the student's principal directions on
    a sample of the training texts (after init_from, so they see the encoder they will train with). Heads kept
    from the model directory (`carried`) are trained already and keep their weights (or init_from's)."""
    model = loaded.model
    heads = [i for i, (d, _) in enumerate(zip(model.spec.matryoshka_dims, model.matryoshka))  # none when sliced
             if d < model.pooled_dim and i not in carried
             and (fresh is None or f"matryoshka.{i}.kernel" in fresh)]
    if not heads:
        return
    # prepared data keeps a uniform sample of its texts for this, not every text
    texts = read_texts(upath(cfg.data.train) / SAMPLE if is_prepared(cfg.data.train) else cfg.data.train)
    rng = np.random.default_rng(cfg.seed)
    sample = [texts[i] for i in sorted(rng.choice(len(texts), min(PRINCIPAL_SAMPLE, len(texts)), replace=False))]
    principal_head_init(loaded, heads, sample)
    log.info("head_init principal: Matryoshka heads %s from %d training texts",
             [model.spec.matryoshka_dims[i] for i in heads], len(sample))


def principal_head_init(loaded: LoadedEmbedder, heads: list[int], texts: list[str]) -> None:
    """Set Matryoshka heads `heads` (indices into model.matryoshka, each narrower than the pooled vector) to the top
    right singular vectors of the normalized pooled vectors of `texts`, with zero bias.

    Uncentered on purpose: with no bias the head's cosines are those of the rank-d approximation of the texts'
    Gram matrix, the closest any d-dimensional linear map gets to the student's own cosines. A random projection
    to 1/4 of the dims, by contrast, starts a Matryoshka head far below the full-dimension quality, and the low
    learning rate of a last all-parameter stage does not make that up."""
    model = loaded.model
    pooled_only = Embedder(model.encoder, dataclasses.replace(model.spec, dense=(), normalize=True,
                                                             matryoshka_dims=()))
    x = encode_texts(dataclasses.replace(loaded, model=pooled_only), texts)  # float32[N, H]
    _, _, vt = np.linalg.svd(np.asarray(x, np.float64), full_matrices=False)
    for i in heads:
        layer = model.matryoshka[i]
        d = layer.kernel[...].shape[1]
        layer.kernel[...] = jnp.asarray(vt[:d].T, layer.kernel[...].dtype)
        if layer.bias is not None:
            layer.bias[...] = jnp.zeros_like(layer.bias[...])
