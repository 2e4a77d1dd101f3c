"""Training from prepared shards: prepare with the CLI, train, stop as a preemption would, resume exactly."""

import json

import numpy as np
import pytest

from hf_tiny import tiny_prepared_shards
from jaxretrieval.config import load_config
from jaxretrieval.training import run_training as train


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return tiny_prepared_shards(tmp_path_factory.mktemp("prepared"))


def test_training_from_shards_resumes_exactly(prepared, tmp_path):
    model, _, out = prepared

    def cfg(run):
        return load_config(None, [f"output_dir={run}", f"model.path={model}", f"data.train={out}", "batch_size=8",
                                  "data.num_negatives=1", "model.max_query_length=16", "model.max_doc_length=24",
                                  "steps=4", "save_every=2", "log_every=1", "learning_rate=1e-3"])

    train(cfg(tmp_path / "straight"))
    train(cfg(tmp_path / "resumed"), stop_at_step=2)
    train(cfg(tmp_path / "resumed"))
    read = lambda run: [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    straight, resumed = read(tmp_path / "straight"), read(tmp_path / "resumed")
    assert [m["step"] for m in straight] == [1, 2, 3, 4]
    assert [m for m in straight if m["step"] > 2] == [m for m in resumed if m["step"] > 2]
    assert np.isfinite([m["loss"] for m in straight]).all()
