"""Launch scripts: --dry-run prints the exact commands (and runs nothing); bad arguments fail clearly."""

import os
import subprocess
from pathlib import Path

import pytest

LAUNCH = Path(__file__).resolve().parents[2] / "launch"


def _run(script, *args):
    return subprocess.run(["bash", str(LAUNCH / script), *args], capture_output=True, text=True, timeout=60)


def test_tpu_pod_dry_run_prints_every_step():
    r = _run("tpu_pod.sh", "--name", "pod1", "--zone", "us-central2-b", "--accelerator-type", "v4-16",
             "--runtime", "tpu-ubuntu2204-base", "--project", "proj", "--delete-on-exit", "--dry-run",
             "configs/scifact_mnrl.yaml", "steps=10")
    assert r.returncode == 0, r.stderr
    lines = [x for x in r.stdout.splitlines() if x.startswith("+ ")]
    assert lines[0].startswith("+ gcloud compute tpus tpu-vm create pod1 --zone us-central2-b --project proj "
                               "--accelerator-type v4-16 --version tpu-ubuntu2204-base")
    assert "tpu-vm delete pod1" in lines[1] and "--quiet" in lines[1]
    assert "tpu-vm scp --recurse" in lines[2] and "--worker=all" in lines[2]
    assert "jax\\[tpu\\]" in lines[3] and "--worker=all" in lines[3]
    assert "JAXRETRIEVAL_DISTRIBUTED=1" in lines[4] and "jaxretrieval\\ train\\ configs/scifact_mnrl.yaml\\ steps=10" \
        in lines[4] and "tee" in lines[4]


@pytest.mark.parametrize("script,expect", [("gpu.sh", "jax\\[cuda12\\]"), ("local.sh", "pip install -q -e .")])
def test_gpu_and_local_dry_runs(script, expect):
    r = _run(script, "--dry-run", "configs/quickstart.yaml", "steps=5")
    assert r.returncode == 0, r.stderr
    assert expect in r.stdout
    assert r.stdout.strip().splitlines()[-1] == "+ .venv/bin/jaxretrieval train configs/quickstart.yaml steps=5"


def test_bad_arguments():
    r = _run("tpu_pod.sh", "--dry-run", "configs/x.yaml")
    assert r.returncode == 2 and "--name is required" in r.stderr
    r = _run("tpu_pod.sh", "--bogus")
    assert r.returncode == 2 and "unknown option --bogus" in r.stderr
    r = _run("gpu.sh", "--dry-run")
    assert r.returncode == 2 and "missing CONFIG" in r.stderr


def test_a_preempted_slice_is_recreated_and_the_run_resumed(tmp_path):
    """A fake gcloud: the first training command fails and the slice reports PREEMPTED; the launcher deletes it,
    creates and sets it up again, and runs the same training command, which then succeeds."""
    log, count = tmp_path / "calls.log", tmp_path / "trains"
    fake = tmp_path / "bin" / "gcloud"
    fake.parent.mkdir()
    fake.write_text(f"""#!/usr/bin/env bash
echo "$*" >> {log}
case "$*" in
  *"tpu-vm describe"*) echo PREEMPTED ;;
  *"tpu-vm ssh"*"jaxretrieval train"*) echo x >> {count}; [ "$(wc -l < {count})" -ge 2 ] ;;
esac
""")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"}
    r = subprocess.run(["bash", str(LAUNCH / "tpu_pod.sh"), "--name", "p", "--zone", "z", "--accelerator-type", "t",
                        "--runtime", "r", "configs/x.yaml", "output_dir=gs://b/run"], capture_output=True, text=True,
                       timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    calls = [c.split(" --")[0] for c in log.read_text().splitlines()]
    assert calls.count("compute tpus tpu-vm create p") == 2 and calls.count("compute tpus tpu-vm delete p") == 1
    trains = [c for c in log.read_text().splitlines() if "jaxretrieval train" in c]
    assert len(trains) == 2 and trains[0] == trains[1]  # the same command: it resumes from the checkpoint
    assert "was preempted: creating it again and resuming (1 of 3)" in r.stderr
