"""Launch scripts: --dry-run prints the exact commands (and runs nothing); bad arguments fail clearly."""

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
