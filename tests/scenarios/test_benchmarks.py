"""Benchmark scripts call the library's internals (the train step, the loaders); these runs on a tiny model keep
them in step with it. They check that a script runs and prints its figures, not the figures themselves."""

import math
import os
import subprocess
import sys
from pathlib import Path

from hf_tiny import tiny_embedder_dir, tiny_pairs_jsonl

REPO = Path(__file__).resolve().parents[2]


def test_train_throughput_runs_on_a_tiny_model(tmp_path):
    model = tiny_embedder_dir(tmp_path / "model")
    data = tiny_pairs_jsonl(tmp_path / "pairs.jsonl", rows=32, negatives=0)
    cmd = [sys.executable, str(REPO / "benchmarks" / "train_throughput.py"), "--model", str(model), "--data",
           str(data), "--steps", "1", "--skip-st", "model.max_query_length=16", "model.max_doc_length=32"]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    for variant in ("defaults", "data.packing=true"):  # padded and packed batches, side by side
        assert f"jaxretrieval [{variant}]:" in run.stdout and "real tokens" in run.stdout, run.stdout


def test_gpu_suite_smoke_prints_every_recipe():
    """gpu_suite.sh in its smoke mode (tiny shapes, two steps) runs on CPU and prints a row per recipe with a
    finite loss and positive throughputs, so the accelerator benchmark stays runnable between GPU sessions."""
    env = {**os.environ, "PYTHON": sys.executable}
    out = subprocess.run([str(REPO / "benchmarks" / "gpu_suite.sh"), "--smoke"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [line for line in out.stdout.splitlines() if "(smoke)" in line and "|" in line]
    assert len(lines) == 4, out.stdout
    for line in lines:
        cells = [c.strip() for c in line.split("|")]
        train, encode, loss = float(cells[2]), float(cells[4]), float(cells[9])
        assert train > 0 and encode > 0 and math.isfinite(loss)
    assert "LoRA" in out.stdout
