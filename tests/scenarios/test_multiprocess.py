"""Two local CPU processes (coordinator on 127.0.0.1, 2 devices each) train like one process with 4 devices and
the same global batch, and resume together from their checkpoint."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from hf_tiny import tiny_embedder_dir, tiny_pairs_jsonl


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(config, out, steps, processes, devices_per_process):
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices_per_process}",
           "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, "-m", "jaxretrieval.cli", "train", str(config), f"output_dir={out}", f"steps={steps}",
           "shared_filesystem=true"]  # both processes run on this machine: one filesystem
    if processes == 1:
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        return
    port = _free_port()
    procs = [subprocess.Popen(cmd, env={**env, "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
                                        "JAX_NUM_PROCESSES": str(processes), "JAX_PROCESS_ID": str(i)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(processes)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]


def _losses(out):
    return [json.loads(x)["loss"] for x in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]


def test_two_processes_match_one_and_resume(tmp_path):
    model = tiny_embedder_dir(tmp_path / "model")
    data = tiny_pairs_jsonl(tmp_path / "d.jsonl", rows=32, negatives=2)
    config = tmp_path / "c.yaml"
    config.write_text(f"model:\n  path: {model}\ndata:\n  train: {data}\n  num_negatives: 1\nbatch_size: 8\n"
                      "learning_rate: 1.0e-3\nsave_every: 3\nlog_every: 1\noptimizer:\n  schedule: constant\n"
                      "  warmup_steps: 1\n")
    _train(config, tmp_path / "one", 4, processes=1, devices_per_process=4)
    _train(config, tmp_path / "two", 3, processes=2, devices_per_process=2)
    one = _losses(tmp_path / "one")
    two = _losses(tmp_path / "two")
    assert len(one) == 4 and len(two) == 3
    np.testing.assert_allclose(two, one[:3], atol=1e-5)
    # both processes restore step 3 together and continue (a constant schedule does not depend on `steps`)
    _train(config, tmp_path / "two", 4, processes=2, devices_per_process=2)
    resumed = _losses(tmp_path / "two")
    assert len(resumed) == 4
    np.testing.assert_allclose(resumed[3], one[3], atol=1e-5)


def test_two_processes_stream_their_shards_and_resume_mid_epoch(tmp_path):
    """Each process streams its own prepared shards (fixed shapes, the same step count), and a run stopped
    mid-epoch resumes on both exactly as if it had never stopped."""
    from jaxretrieval.cli import main

    model = tiny_embedder_dir(tmp_path / "model")
    data = tiny_pairs_jsonl(tmp_path / "d.jsonl", rows=34, negatives=2)
    shards = tmp_path / "shards"
    assert main(["prepare", "--model", str(model), "--data", str(data), "--out", str(shards), "--shards", "4",
                 "--max-query-length", "16", "--max-doc-length", "24"]) == 0
    config = tmp_path / "c.yaml"
    config.write_text(f"model:\n  path: {model}\n  max_query_length: 16\n  max_doc_length: 24\ndata:\n  train: "
                      f"{shards}\n  num_negatives: 1\nbatch_size: 8\nlearning_rate: 1.0e-3\nsave_every: 2\n"
                      "log_every: 1\noptimizer:\n  schedule: constant\n  warmup_steps: 1\n")
    _train(config, tmp_path / "straight", 6, processes=2, devices_per_process=2)  # 17 rows a process: 4 steps an epoch
    _train(config, tmp_path / "resumed", 2, processes=2, devices_per_process=2)
    _train(config, tmp_path / "resumed", 6, processes=2, devices_per_process=2)
    straight, resumed = _losses(tmp_path / "straight"), _losses(tmp_path / "resumed")
    assert len(straight) == len(resumed) == 6 and np.isfinite(straight).all()
    assert resumed == straight


@pytest.mark.parametrize("one_source", [True, False])
def test_two_processes_train_a_mixture_like_one_and_resume_mid_mixture(tmp_path, one_source):
    """Both processes draw the same source for each step (or split each source's rows of a mixed batch: 2 and 6
    of 8), so two processes of 2 devices match one of 4, and resume together mid-mixture. A mixed batch is laid
    out by process (each one's rows of every source), so its dropout masks fall on other rows with another
    process count: that case is compared without dropout."""
    model = tiny_embedder_dir(tmp_path / "model")
    a = tiny_pairs_jsonl(tmp_path / "a.jsonl", rows=32, negatives=2, seed=1)
    b = tiny_pairs_jsonl(tmp_path / "b.jsonl", rows=20, negatives=2, seed=2)
    config = tmp_path / "c.yaml"
    config.write_text(f"model:\n  path: {model}\n  dropout: {str(one_source).lower()}\n"
                      f"data:\n  train: [{a}, {{path: {b}, weight: 3}}]\n"
                      f"  sampling: weights\n  batch_from_one_source: {str(one_source).lower()}\n  num_negatives: 1\n"
                      "batch_size: 8\nlearning_rate: 1.0e-3\nsave_every: 3\nlog_every: 1\noptimizer:\n"
                      "  schedule: constant\n  warmup_steps: 1\n")
    _train(config, tmp_path / "one", 5, processes=1, devices_per_process=4)
    _train(config, tmp_path / "two", 3, processes=2, devices_per_process=2)
    _train(config, tmp_path / "two", 5, processes=2, devices_per_process=2)
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(one) == len(two) == 5
    np.testing.assert_allclose(two, one, atol=1e-5)
