"""The model a config describes: the directory's embedder, plus new heads, plus parameters from a previous stage.

Training, export and evaluation of a run all build the model here, so a checkpoint always meets the same
structure it was saved from.
"""

from __future__ import annotations

import logging
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from jaxretrieval.config import TrainConfig
from jaxretrieval.convert.st_import import LoadedEmbedder, load_embedder
from jaxretrieval.errors import InputError
from jaxretrieval.models.embedder import Embedder, carried_matryoshka_heads, with_heads
from jaxretrieval.models.params import param_shapes, select_params, set_flat_params

log = logging.getLogger(__name__)

PRINCIPAL_SAMPLE = 2048  # training texts whose pooled vectors give head_init=principal its directions


def load_checkpoint_params(model: Embedder, run_dir: Path, step: int, require_all: bool = False,
                           keep_fresh: frozenset[str] = frozenset()) -> list[str]:
    """Copy a checkpoint's parameters into `model` by name, except those in `keep_fresh` (their saved shape may
    differ too). Returns the names left as initialized: those the checkpoint lacked (new heads of a later stage)
    and `keep_fresh`. require_all makes any missing or unexpected name an error."""
    from jaxretrieval.train.checkpoint import restore_params

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


def build_model(cfg: TrainConfig, initialize: bool = True):
    """LoadedEmbedder for the dense and distill tasks, LoadedColBERT for colbert, LoadedReranker for reranker.

    initialize=False skips what only a training start needs (init_from, data-dependent head initialization): for
    callers that load a whole checkpoint over the result."""
    if cfg.task == "colbert":
        from jaxretrieval.convert.colbert_io import load_colbert

        loaded = load_colbert(cfg.model.path, cfg.colbert, seed=cfg.seed)
        _finish(cfg, loaded.model, initialize)
        return loaded
    if cfg.task == "reranker":
        from jaxretrieval.convert.reranker_io import load_reranker

        r = cfg.reranker
        dtype = jnp.bfloat16 if cfg.model.compute_dtype == "bfloat16" else jnp.float32
        loaded = load_reranker(cfg.model.path, r.max_length, r.query_format, r.doc_format, r.special_token,
                               seed=cfg.seed, dtype=dtype)
        _finish(cfg, loaded.model, initialize)
        return loaded
    return build_embedder(cfg, initialize)


def _finish(cfg: TrainConfig, model, initialize: bool = True) -> set[str] | None:
    """LoRA adapters on the encoder, then parameters from init_from (adapters first, so a LoRA run's checkpoint
    meets the structure it was saved from). Returns the parameter names init_from lacked (None: no init_from,
    everything is as built)."""
    from jaxretrieval.models.lora import add_lora

    m = cfg.model
    if m.lora_rank:
        try:
            count = add_lora(model.encoder, m.lora_rank, m.lora_alpha, tuple(m.lora_targets), seed=cfg.seed)
        except ValueError as e:
            raise InputError(str(e), "config", field="model.lora_targets") from None
        log.info("LoRA rank %d on %d linear layers", m.lora_rank, count)
    return _init_from(cfg, model) if initialize else None


def _init_from(cfg: TrainConfig, model) -> set[str] | None:
    from jaxretrieval.train.checkpoint import find_checkpoint

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
    dtype = jnp.bfloat16 if m.compute_dtype == "bfloat16" else jnp.float32
    pooling = tuple(m.pooling.split(",")) if m.pooling else None
    loaded = load_embedder(m.path, pooling=pooling, max_length=m.max_length or None, dtype=dtype)
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
        loaded = LoadedEmbedder(model, loaded.tokenizer, loaded.path)
    fresh = _finish(cfg, loaded.model, initialize)
    if initialize and m.head_init == "principal":
        _principal_heads(cfg, loaded, fresh, carried)
    return loaded


def _principal_heads(cfg: TrainConfig, loaded: LoadedEmbedder, fresh: set[str] | None,
                     carried: tuple[int, ...]) -> None:
    """Fresh Matryoshka heads narrower than the pooled vector start from the student's principal directions on
    a sample of the training texts (after init_from, so they see the encoder they will train with). Heads kept
    from the model directory (`carried`) are trained already and keep their weights (or init_from's)."""
    from jaxretrieval.data.jsonl import read_texts
    from jaxretrieval.models.embedder import principal_head_init

    model = loaded.model
    heads = [i for i, (d, _) in enumerate(zip(model.spec.matryoshka_dims, model.matryoshka))  # none when sliced
             if d < model.pooled_dim and i not in carried
             and (fresh is None or f"matryoshka.{i}.kernel" in fresh)]
    if not heads:
        return
    texts = read_texts(cfg.data.train)
    rng = np.random.default_rng(cfg.seed)
    sample = [texts[i] for i in sorted(rng.choice(len(texts), min(PRINCIPAL_SAMPLE, len(texts)), replace=False))]
    principal_head_init(loaded, heads, sample)
    log.info("head_init principal: Matryoshka heads %s from %d training texts",
             [model.spec.matryoshka_dims[i] for i in heads], len(sample))
