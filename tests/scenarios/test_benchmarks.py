"""Benchmark scripts call the library's internals (the train step, the loaders); these runs on a tiny model keep
them in step with it. They check that a script runs and prints its figures, not the figures themselves."""

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
    assert "jaxretrieval:" in run.stdout and "pairs/s" in run.stdout, run.stdout
