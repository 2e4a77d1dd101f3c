"""Shared by the scenario tests of exact resume: a run's metrics.jsonl, and a straight run beside one stopped as a
preemption would and resumed with the same config."""

import dataclasses
import json

from jaxretrieval.training import run_training as train


def run_metrics(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def straight_and_resumed(cfg, tmp_path, stop_at=2):
    """metrics.jsonl of a straight run and of one stopped at `stop_at` and resumed with the same config."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(dataclasses.replace(cfg, output_dir=str(straight)))
    train(dataclasses.replace(cfg, output_dir=str(resumed)), stop_at_step=stop_at)
    train(dataclasses.replace(cfg, output_dir=str(resumed)))
    return run_metrics(straight), run_metrics(resumed)
