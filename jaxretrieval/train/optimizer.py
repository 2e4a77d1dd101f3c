"""AdamW with warmup + linear/cosine decay and global-norm clipping; no weight decay on biases and LayerNorm."""

from __future__ import annotations

import re
from typing import NamedTuple

import jax
import optax

from jaxretrieval.config import OptimizerConfig
from jaxretrieval.models.params import param_name

_DECAYED = re.compile(r"(^|\.)(kernel|embedding)$")


def learning_rate_schedule(cfg: OptimizerConfig, peak: float, total_steps: int) -> optax.Schedule:
    """0 → peak over the warmup steps, then decay (to 0 for linear/cosine) at the last step."""
    warmup = cfg.warmup_steps or int(cfg.warmup_ratio * total_steps)
    rest = max(total_steps - warmup, 1)
    if cfg.schedule == "linear":
        decay = optax.linear_schedule(peak, 0.0, rest)
    elif cfg.schedule == "cosine":
        decay = optax.cosine_decay_schedule(peak, rest)
    else:
        decay = optax.constant_schedule(peak)
    if warmup == 0:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), decay], [warmup])


def weight_decay_mask(params):
    """True for matrices (dense kernels, embedding tables); False for biases and LayerNorm scales."""
    return jax.tree_util.tree_map_with_path(lambda path, _: bool(_DECAYED.search(param_name(path))), params)


class Optimizer(NamedTuple):
    tx: optax.GradientTransformation
    schedule: optax.Schedule  # step -> learning rate, logged beside the loss


def make_optimizer(cfg: OptimizerConfig, peak: float, total_steps: int) -> Optimizer:
    schedule = learning_rate_schedule(cfg, peak, total_steps)
    tx = optax.chain(
        optax.clip_by_global_norm(cfg.max_grad_norm) if cfg.max_grad_norm > 0 else optax.identity(),
        optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay,
                    mask=weight_decay_mask),
    )
    return Optimizer(tx, schedule)
