"""The fault campaign: a tiny run on CPU killed, preempted, poisoned with NaN, given damaged checkpoints, a second
writer and bad input, and each time it ends where an uninterrupted run ends, or stops with one clear line and its
saved work intact. Run it alone with `pytest -m faults`."""

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from hf_tiny import tiny_embedder_dir, tiny_pairs_jsonl
from jaxretrieval.cli import main
from jaxretrieval.config import load_config
from jaxretrieval.data.jsonl import read_texts
from jaxretrieval.errors import TrainingDiverged
from jaxretrieval.train import loop
from jaxretrieval.train.checkpoint import checkpoint_steps, restore_params
from jaxretrieval.train.run_control import LOCK_FILE, read_status
from jaxretrieval.training import run_training

pytestmark = pytest.mark.faults

STEPS = 40


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    model = tiny_embedder_dir(root / "model")
    data = tiny_pairs_jsonl(root / "data.jsonl", rows=32, negatives=2)
    config = root / "run.yaml"
    config.write_text(f"model:\n  path: {model}\ndata:\n  train: {data}\n  num_negatives: 1\nbatch_size: 8\n"
                      f"learning_rate: 1.0e-3\nsteps: {STEPS}\nsave_every: 2\nlog_every: 1\nmesh:\n  data: 1\n")
    straight = root / "straight"
    assert _cli(config, straight).returncode == 0
    return root, model, data, config, straight


def _cmd(config, out, *extra):
    return [sys.executable, "-m", "jaxretrieval.cli", "train", str(config), f"output_dir={out}", *extra]


def _env(devices=1, **extra):
    return {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu",
            **extra}


def _cli(config, out, *extra):
    return subprocess.run(_cmd(config, out, *extra), env=_env(), capture_output=True, text=True, timeout=600)


def _logged_steps(out: Path) -> list[int]:
    path = out / "metrics.jsonl"
    if not path.exists():
        return []
    steps = []
    for line in path.read_text().splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except (json.JSONDecodeError, KeyError):
            pass
    return steps


def _wait_for_step(proc, out: Path, step: int, timeout: float = 300) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        logged = _logged_steps(out)
        if logged and max(logged) >= step:
            return max(logged)
        if proc.poll() is not None:
            return max(logged, default=0)
        time.sleep(0.05)
    raise AssertionError(f"no step {step} logged in {timeout} s")


def _same_run(a: Path, b: Path) -> None:
    """The final checkpoints hold the same parameters bit for bit, and every step is logged once with the same
    loss."""
    pa, _ = restore_params(a, checkpoint_steps(a)[-1])
    pb, _ = restore_params(b, checkpoint_steps(b)[-1])
    assert checkpoint_steps(a)[-1] == checkpoint_steps(b)[-1] == STEPS
    assert set(pa) == set(pb)
    for k in pa:
        np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)
    la = [(r["step"], r["loss"]) for r in map(json.loads, (a / "metrics.jsonl").read_text().splitlines())]
    lb = [(r["step"], r["loss"]) for r in map(json.loads, (b / "metrics.jsonl").read_text().splitlines())]
    assert la == lb


def _wait_for_new_step(proc, out: Path, inode_before: int | None, timeout: float = 300) -> int:
    """Wait until the restarted process has logged a step of its own: it rewrites metrics.jsonl when it starts
    (dropping the steps it will replay), so a new inode plus a step past the newest checkpoint is its own."""
    newest = max(checkpoint_steps(out), default=0)
    path = out / "metrics.jsonl"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            return -1
        try:
            fresh = path.stat().st_ino != inode_before
        except FileNotFoundError:
            fresh = False
        if fresh and max(_logged_steps(out), default=0) > newest:
            return max(_logged_steps(out))
        time.sleep(0.02)
    raise AssertionError(f"no new step logged in {timeout} s")


def test_ten_kills_at_random_moments_resume_bitwise(tiny):
    """kill -9 ten times at random moments of one run (a restart loop), each restart resuming the newest committed
    checkpoint (a kill during an asynchronous checkpoint write leaves one without Orbax's commit marker, which does
    not count); the run ends bitwise where the straight run ends."""
    root, _, _, config, straight = tiny
    out = root / "killed"
    rng = random.Random(0)
    during_write = 0
    for trial in range(10):
        inode = (out / "metrics.jsonl").stat().st_ino if (out / "metrics.jsonl").exists() else None
        before = {p.name for p in (out / "checkpoints").iterdir()} if (out / "checkpoints").exists() else set()
        proc = subprocess.Popen(_cmd(config, out), env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        assert _wait_for_new_step(proc, out, inode) > 0, f"trial {trial}: the run ended before its kill"
        time.sleep(rng.uniform(0.0, 0.6))
        tmp = [p for p in (out / "checkpoints").iterdir() if "tmp" in p.name and p.name not in before]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        during_write += bool(tmp)
    assert _cli(config, out).returncode == 0  # the restart loop's last restart finishes the run
    _same_run(straight, out)
    assert read_status(out)["status"] == "finished"
    assert not [p for p in (out / "checkpoints").iterdir() if "tmp" in p.name]  # cut-off saves were cleaned up
    print(f"fault campaign: 10 kill -9 trials ({during_write} while a checkpoint was being written), resumed bitwise")


def test_sigterm_saves_the_step_and_resumes_bitwise(tiny):
    root, _, _, config, straight = tiny
    out = root / "sigterm"
    proc = subprocess.Popen(_cmd(config, out), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    _wait_for_step(proc, out, 5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    status = read_status(out)
    assert status["status"] == "interrupted" and status["reason"] == "SIGTERM"
    assert checkpoint_steps(out)[-1] == status["step"] < STEPS  # the step it stopped after is saved
    assert "run the same command to resume" in err
    assert _cli(config, out).returncode == 0
    _same_run(straight, out)


def test_sigterm_on_one_of_two_processes_stops_both_at_the_same_step(tiny, tmp_path):
    root, model, data, _, _ = tiny
    config = tmp_path / "two.yaml"
    config.write_text(f"model:\n  path: {model}\ndata:\n  train: {data}\n  num_negatives: 1\nbatch_size: 8\n"
                      f"learning_rate: 1.0e-3\nsteps: {STEPS}\nsave_every: 100\nlog_every: 1\n"
                      "shared_filesystem: true\n")  # both processes on this machine
    out = tmp_path / "two"
    port = 20000 + os.getpid() % 20000
    procs = [subprocess.Popen(_cmd(config, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_env(2, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
                                       JAX_PROCESS_ID=str(i))) for i in range(2)]
    _wait_for_step(procs[0], out, 3)
    procs[1].send_signal(signal.SIGTERM)  # only one host is preempted
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    status = read_status(out)
    assert status["status"] == "interrupted" and checkpoint_steps(out) == [status["step"]]


def _poisoned(monkeypatch, steps_to_poison, source):
    """Make the loss NaN at the given (1-based, as logged) steps, recognising their batches by their query ids."""
    targets = [jnp.asarray(source.batch(s - 1)["query_text"]) for s in steps_to_poison]
    real = loop.task_loss

    def task_loss(task, model, batch, teacher_params, key):
        loss, metrics = real(task, model, batch, teacher_params, key)
        hit = jnp.zeros((), bool)
        for t in targets:
            hit = hit | jnp.array_equal(batch["query_text"], t)
        return jnp.where(hit, jnp.nan, loss), metrics

    monkeypatch.setattr(loop, "task_loss", task_loss)


def _cfg(out, model, data, *extra):
    return load_config(None, [f"output_dir={out}", f"model.path={model}", f"data.train={data}", "batch_size=8",
                              "data.num_negatives=1", "learning_rate=1e-3", "save_every=1", "log_every=1",
                              "mesh.data=1", "steps=6", *extra])


def test_a_nan_step_is_skipped_and_counted(tiny, tmp_path, monkeypatch):
    _, model, data, _, _ = tiny
    cfg = _cfg(tmp_path / "nan", model, data)
    _poisoned(monkeypatch, [3], loop.setup(cfg).source)
    summary = run_training(cfg)
    assert summary["step"] == 6 and summary["skipped_steps"] == 1
    records = [json.loads(x) for x in (tmp_path / "nan" / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped_steps"] for r in records] == [0, 0, 1, 1, 1, 1]
    p2, _ = restore_params(tmp_path / "nan", 5)
    for step in checkpoint_steps(tmp_path / "nan"):
        params, _ = restore_params(tmp_path / "nan", step)
        assert all(np.isfinite(v).all() for v in params.values())
    assert any(not np.array_equal(p2[k], restore_params(tmp_path / "nan", 6)[0][k]) for k in p2)  # it trains on


def test_divergence_stops_with_finite_checkpoints(tiny, tmp_path, monkeypatch, capsys):
    _, model, data, _, _ = tiny
    out = tmp_path / "diverged"
    cfg = _cfg(out, model, data, "max_bad_steps=2", "keep_checkpoints=3")
    _poisoned(monkeypatch, [3, 4, 5, 6], loop.setup(cfg).source)
    with pytest.raises(TrainingDiverged, match="the last 2 steps .to step 4."):
        run_training(cfg)
    after_two, _ = restore_params(out, 2)
    assert checkpoint_steps(out) == [1, 2, 3]  # it stopped at step 4, before saving it
    for step in (2, 3):  # step 3 was skipped: its checkpoint holds step 2's parameters
        params, _ = restore_params(out, step)
        for k, v in params.items():
            assert np.isfinite(v).all()
            np.testing.assert_array_equal(v, after_two[k])
    assert read_status(out)["status"] == "diverged"
    assert main(["export", "--checkpoint", str(out), "--out", str(tmp_path / "x")]) == 0  # finite: exports


@pytest.mark.parametrize("damage", ["truncated", "no_metadata", "empty_state"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous(tiny, tmp_path, damage, capsys):
    _, model, data, _, _ = tiny
    out = tmp_path / "run"
    run_training(_cfg(out, model, data, "steps=4", "save_every=2"))
    newest = out / "checkpoints" / "4" / "state"
    if damage == "truncated":
        big = max((p for p in newest.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
        big.write_bytes(big.read_bytes()[: big.stat().st_size // 3])
    elif damage == "no_metadata":
        (newest / "_METADATA").unlink()
    else:
        shutil.rmtree(newest)
        newest.mkdir()
    capsys.readouterr()
    assert main(["export", "--checkpoint", str(out), "--out", str(tmp_path / "x")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1  # one line, not an Orbax traceback
    summary = run_training(_cfg(out, model, data, "steps=6", "save_every=2"))
    assert summary["step"] == 6 and (out / "checkpoints" / "4.damaged").is_dir()
    assert "checkpoint at step 4 cannot be read" in capsys.readouterr().out
    assert checkpoint_steps(out)[-1] == 6


def test_a_second_writer_is_refused_and_a_stale_lock_taken_over(tiny, tmp_path):
    root, _, _, config, _ = tiny
    out = tmp_path / "busy"
    proc = subprocess.Popen(_cmd(config, out), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_step(proc, out, 1)
        r = _cli(config, out)
        assert r.returncode == 2 and "another trainer is writing this run" in r.stderr.strip().splitlines()[-1]
    finally:
        proc.kill()
        proc.wait()
    lock = json.loads((out / LOCK_FILE).read_text())  # left behind by the kill: its pid is gone
    assert lock["pid"] == proc.pid
    r = _cli(config, out)
    assert r.returncode == 0 and "stale lock" in r.stderr and not (out / LOCK_FILE).exists()


def _snapshot(out: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(out)): (p.stat().st_size, p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()}


def _bad_files(root: Path, model: Path, data: Path) -> dict[str, Path]:
    bad = {}
    bad["latin1"] = root / "latin1.jsonl"
    bad["latin1"].write_bytes(data.read_bytes() + '{"query": "caf\u00e9", "pos": ["x"]}\n'.encode("latin-1"))
    records = [json.loads(x) for x in data.read_text().splitlines()]
    bad["nan_scores"] = root / "nan_scores.jsonl"
    bad["nan_scores"].write_text("".join(json.dumps({**r, "pos_scores": [float("nan")], "neg_scores": [0.0] * 2})
                                         + "\n" for r in records))
    vectors = np.ones((len(read_texts(data)), 24), np.float32)
    vectors[5, 3] = np.nan
    bad["nan_vectors"] = root / "nan.npy"
    np.save(bad["nan_vectors"], vectors)
    return bad


@pytest.mark.parametrize("case, extra, expect", [
    ("keep_checkpoints 0", ["keep_checkpoints=0"], r"\[keep_checkpoints\]"),
    ("keep_checkpoints -1", ["keep_checkpoints=-1"], r"\[keep_checkpoints\]"),
    ("log_every 0", ["log_every=0"], r"\[log_every\]"),
    ("max_bad_steps 0", ["max_bad_steps=0"], r"\[max_bad_steps\]"),
    ("infinite temperature", ["loss.temperature=inf"], r"\[loss.temperature\]: must be a finite number"),
    ("nan learning rate", ["learning_rate=nan"], r"\[learning_rate\]: must be a finite number"),
    ("unknown key", ["stepz=3"], r"\[stepz\]"),
    ("changed learning rate on resume", ["learning_rate=5e-3"], r"\[learning_rate\]: resuming step"),
    ("changed seed on resume", ["seed=3"], r"\[seed\]"),
    ("non-UTF-8 jsonl", ["data.train={latin1}"], r"latin1.jsonl:33: not UTF-8"),
    ("NaN teacher scores", ["data.train={nan_scores}", "loss.name=kl"], r"nan_scores.jsonl:1 \[pos_scores\]"),
    ("NaN teacher vectors", ["task=distill", "distill.teacher_vectors=[{nan_vectors}]", "model.head_dim=24",
                             "distill.cosine_weight=0"], r"nan.npy \[distill.teacher_vectors\]: row 5"),
    ("missing model", ["model.path={root}/none"], r"none: model directory does not exist"),
    ("batch larger than the data", ["batch_size=64"], r"\[batch_size\]"),
])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(tiny, tmp_path_factory, capsys, case, extra, expect):
    root, model, data, config, _ = tiny
    out = root / "existing"
    if not out.exists():
        assert _cli(config, out, "steps=2").returncode == 0  # a run whose files must survive every bad call
    bad = _bad_files(tmp_path_factory.mktemp("bad"), model, data)
    before = _snapshot(out)
    args = [a.format(root=root, **bad) for a in extra]
    capsys.readouterr()
    assert main(["train", str(config), f"output_dir={out}", "steps=2", *args]) == 2, case
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert re.search(expect, err[0]), err[0]
    assert _snapshot(out) == before, case
