"""The pod path, end to end, on a local GCS emulator (tests/gcs_emulator.py): models, data, config, run and exports
all under gs://. Prepare to gs://, train to gs://, kill -9, resume from gs:// exactly; two processes writing one
gs:// checkpoint; export from gs:// to a directory that sentence-transformers loads; encode from a gs:// model; and
the bad cases (a missing bucket, refused credentials) as one line and exit 2. Nothing here talks to any address
but 127.0.0.1."""

import http.server
import json
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from gcs_emulator import free_port
from hf_tiny import tiny_embedder_dir, tiny_pairs_jsonl
from jaxretrieval.files import local_copy, read_text, upath
from jaxretrieval.train.checkpoint import checkpoint_steps, restore_params

STEPS = 12


def _cli(gcs, *args, devices=1, timeout=600, **env):
    return subprocess.run([sys.executable, "-m", "jaxretrieval.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=gcs.process_env(
                              XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu",
                              **env))


def _ok(r):
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def _losses(run) -> list[tuple[int, float]]:
    lines = read_text(f"{run}/metrics.jsonl").splitlines()
    return [(r["step"], r["loss"]) for r in map(json.loads, lines) if "loss" in r]


@pytest.fixture(scope="module")
def staged(gcs, tmp_path_factory):
    """A tiny model and data uploaded to gs://, prepared into gs:// shards, and a config in gs:// naming them."""
    root = tmp_path_factory.mktemp("gcs-runs")
    base = gcs.url()
    model = gcs.put_tree(tiny_embedder_dir(root / "model"), f"{base}/model")
    data = gcs.put_tree(tiny_pairs_jsonl(root / "d.jsonl", rows=32, negatives=2), f"{base}/data/train.jsonl")
    prepared = f"{base}/prepared"
    _ok(_cli(gcs, "prepare", "--model", model, "--data", data, "--out", prepared, "--shards", "2"))
    manifest = json.loads(read_text(f"{prepared}/dataset.json"))
    assert manifest["examples"] == 32 and len(manifest["shards"]) == 2
    configs = {}
    for name, train in (("config", prepared), ("jsonl_config", data)):
        configs[name] = f"{base}/{name}.yaml"
        with upath(configs[name]).open("w") as f:
            f.write(f"model:\n  path: {model}\ndata:\n  train: {train}\n  num_negatives: 1\nbatch_size: 8\n"
                    f"learning_rate: 1.0e-3\nsteps: {STEPS}\nsave_every: 3\nlog_every: 1\n")
    return {"root": root, "base": base, "model": model, "data": data, "prepared": prepared, **configs}


def test_a_run_on_gs_killed_and_resumed_ends_as_an_uninterrupted_local_run(gcs, staged):
    straight = staged["root"] / "straight"  # the same config, written to a local folder, never interrupted
    _ok(_cli(gcs, "train", staged["config"], f"output_dir={straight}"))

    run = f"{staged['base']}/run"
    cmd = [sys.executable, "-m", "jaxretrieval.cli", "train", staged["config"], f"output_dir={run}"]
    env = gcs.process_env(XLA_FLAGS="--xla_force_host_platform_device_count=1", JAX_PLATFORMS="cpu")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not checkpoint_steps(run) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = max(checkpoint_steps(run), default=0)
    assert 0 < killed_at < STEPS, f"the kill did not land mid-run (newest checkpoint {killed_at})"
    resumed = _ok(_cli(gcs, "train", staged["config"], f"output_dir={run}"))
    assert f"resuming from step {killed_at}" in resumed.stderr
    assert "stale lock" in resumed.stderr  # the killed trainer's gs:// lock was taken over

    a, _ = restore_params(straight, STEPS)
    b, _ = restore_params(run, STEPS)
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    straight_losses = _losses(straight)
    assert _losses(run) == straight_losses and len(straight_losses) == STEPS
    for name in ("config.yaml", "run_status.json", "metrics.png"):
        assert upath(f"{run}/{name}").exists(), name
    assert json.loads(read_text(f"{run}/run_status.json"))["status"] == "finished"
    assert any(upath(f"{run}/tensorboard").iterdir())
    staged["run"] = run


def test_export_from_gs_loads_in_sentence_transformers_and_encode_reads_gs_models(gcs, staged, tmp_path):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    run = staged.get("run")
    if run is None:
        pytest.skip("needs the gs:// run of the test before")
    texts = ["a query about foxes", "the quick brown fox", "an unrelated sentence about tax law"]
    texts_url = f"{staged['base']}/texts.txt"
    with upath(texts_url).open("w") as f:
        f.write("\n".join(texts) + "\n")
    exported = tmp_path / "exported"
    _ok(_cli(gcs, "export", "--checkpoint", run, "--out", str(exported)))
    st = sentence_transformers.SentenceTransformer(str(exported), device="cpu")
    reference = st.encode(texts, convert_to_numpy=True, normalize_embeddings=False)

    from_run = f"{staged['base']}/from_run.npy"
    _ok(_cli(gcs, "encode", "--model", run, "--input", texts_url, "--output", from_run))
    np.testing.assert_allclose(np.load(local_copy(from_run)), reference, atol=1e-5)

    model_url = gcs.put_tree(exported, f"{staged['base']}/exported")  # a model directory that lives in gs://
    from_model = f"{staged['base']}/from_model.npy"
    _ok(_cli(gcs, "encode", "--model", model_url, "--input", texts_url, "--output", from_model))
    np.testing.assert_allclose(np.load(local_copy(from_model)), reference, atol=1e-5)


def _two_processes(gcs, config, out, *extra):
    port = free_port()
    cmd = [sys.executable, "-m", "jaxretrieval.cli", "train", config, f"output_dir={out}", *extra]
    procs = [subprocess.Popen(cmd, env=gcs.process_env(
        XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu",
        JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(i)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    return [(p, *p.communicate(timeout=600)) for p in procs]


def test_two_processes_write_one_gs_checkpoint_and_resume_it(gcs, staged):
    """Two hosts (2 CPU devices each, the batch over all 4) save one checkpoint to gs:// together, and resume from
    it together as if never stopped: the same losses as one process with 4 devices (the in-memory data path plans
    the global batch, so the split across hosts does not change it). (A local output_dir refused for several
    processes: tests/train/test_loop.py.)"""
    base, config = staged["base"], staged["jsonl_config"]
    constant = ("optimizer.schedule=constant", "optimizer.warmup_steps=1")  # the same schedule whatever `steps` is
    one = f"{base}/one-process"
    _ok(_cli(gcs, "train", config, f"output_dir={one}", "steps=4", *constant, devices=4))
    two = f"{base}/two-processes"
    for p, _, err in _two_processes(gcs, config, two, "steps=3", *constant):
        assert p.returncode == 0, err[-3000:]
    assert checkpoint_steps(two) == [3]
    names = {p.name for p in upath(f"{two}/checkpoints/3").iterdir()}
    assert {"state", "meta", "commit_success.txt"} <= names
    for p, _, err in _two_processes(gcs, config, two, "steps=4", *constant):
        assert p.returncode == 0, err[-3000:]
    np.testing.assert_allclose([x for _, x in _losses(two)], [x for _, x in _losses(one)], atol=1e-5)
    assert [s for s, _ in _losses(two)] == [1, 2, 3, 4]


class _Refuses(http.server.BaseHTTPRequestHandler):
    """A storage endpoint that turns every request away as unauthenticated."""

    def _refuse(self):
        body = b'{"error": {"code": 401, "message": "Anonymous caller does not have storage.objects.list access"}}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _refuse

    def log_message(self, *args):
        pass


def test_a_missing_bucket_or_refused_credentials_stop_before_training_with_one_line(gcs, staged, tmp_path):
    r = _cli(gcs, "train", staged["config"], "output_dir=gs://no-such-bucket-jaxretrieval/run")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith(
        "jaxretrieval train: error: gs://no-such-bucket-jaxretrieval/run [output_dir]: bucket "
        "'no-such-bucket-jaxretrieval' does not exist")
    r = _cli(gcs, "export", "--checkpoint", staged["model"], "--out", "gs://no-such-bucket-jaxretrieval/x")
    assert r.returncode == 2 and "does not exist" in r.stderr.strip().splitlines()[-1]

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refuses)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        out = tmp_path / "never"
        r = _cli(gcs, "train", staged["config"], f"output_dir={out}",
                 STORAGE_EMULATOR_HOST=f"http://127.0.0.1:{server.server_port}",
                 TENSORSTORE_GCS_HTTP_URL=f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
    assert r.returncode == 2, r.stderr[-2000:]
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("jaxretrieval train: error: ") and "gs://" in line and "401" in line, line
    assert not out.exists()
