"""A training run as `jaxretrieval train` starts it: the train loop handed the side jobs its config asks for.

The loop (train/loop.py) knows only the Evaluator interface; this is where the config's evaluation is built
(eval/evaluate.py) with the door (door.py) that opens a reranker's first stage, and handed over. Later side jobs
(checkpoint and preemption hooks) are wired here the same way.
"""

from __future__ import annotations

from typing import Any

from jaxretrieval.config import TrainConfig
from jaxretrieval.door import open_model
from jaxretrieval.eval.evaluate import RunEvaluator
from jaxretrieval.train.loop import train


def run_training(cfg: TrainConfig, stop_at_step: int | None = None) -> dict[str, Any]:
    """Train (or resume) as the config says, evaluating when it names eval data or a dev split; returns the loop's
    summary."""
    evaluator = RunEvaluator(cfg, open_model) if cfg.eval.data or cfg.eval.sts or cfg.has_dev else None
    return train(cfg, stop_at_step, evaluator)
