"""Launch scripts: --dry-run prints the exact commands (and runs nothing); bad arguments fail clearly."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

LAUNCH = Path(__file__).resolve().parents[2] / "launch"


def _run(script, *args):
    return subprocess.run(["bash", str(LAUNCH / script), *args], capture_output=True, text=True, timeout=60)


POD = ["--name", "pod1", "--zone", "us-central2-b", "--accelerator-type", "v4-16", "--runtime",
       "tpu-ubuntu2204-base", "--project", "proj", "--stage", "gs://b/runs/x/launch"]


def test_tpu_pod_dry_run_prints_every_step():
    r = _run("tpu_pod.sh", *POD, "--spot", "--delete-on-exit", "--dry-run", "configs/scifact_mnrl.yaml", "steps=10")
    assert r.returncode == 0, r.stderr
    lines = [x for x in r.stdout.splitlines() if x.startswith("+ ")]
    assert " -m jaxretrieval.cli config configs/scifact_mnrl.yaml steps=10 --require-remote --out " in lines[0]
    assert lines[1].endswith("rm -rf " + str(LAUNCH.parent / "build"))  # no stale build/lib module in the wheel
    assert " -m pip wheel -q --no-deps -w " in lines[2]
    assert lines[3].startswith("+ gcloud storage cp ") and lines[3].endswith(" gs://b/runs/x/launch/")
    assert lines[4].startswith("+ gcloud compute tpus tpu-vm create pod1 --zone us-central2-b --project proj "
                               "--accelerator-type v4-16 --version tpu-ubuntu2204-base --spot")
    assert "tpu-vm delete pod1" in lines[5] and "--quiet" in lines[5]
    setup, train = lines[6], lines[7]
    assert "--worker=all" in setup and "gs://b/runs/x/launch/jaxretrieval-" in setup and "jax\\[tpu\\]" in setup
    assert "-py3-none-any.whl" in setup  # installed from the staged wheel, not from a copied checkout
    assert "--worker=all" in train and "JAXRETRIEVAL_DISTRIBUTED=1" in train
    assert "jaxretrieval\\ train\\ config.yaml" in train and "tee" in train


def test_tpu_pod_compiles_for_its_topology_before_creating_a_slice():
    r = _run("tpu_pod.sh", *POD, "--topology", "v4:2x2x2", "--check-only", "--dry-run", "configs/scifact_mnrl.yaml")
    assert r.returncode == 0, r.stderr
    lines = [x for x in r.stdout.splitlines() if x.startswith("+ ")]
    assert " -m jaxretrieval.cli config configs/scifact_mnrl.yaml --require-remote " in lines[0]
    assert " -m jaxretrieval.cli compile " in lines[1] and lines[1].endswith("--topology v4:2x2x2")
    assert len(lines) == 2 and "nothing created" in r.stdout  # --check-only: no wheel, no slice
    r = _run("tpu_pod.sh", *POD, "--check-only", "--dry-run", "configs/scifact_mnrl.yaml")
    assert r.returncode == 2 and "--check-only needs --topology" in r.stderr


def test_staging_resolves_the_config_and_refuses_local_paths(tmp_path):
    """What the launcher stages: the config with its base: and overrides applied; every path must be gs://."""
    import yaml

    from jaxretrieval.cli import main

    config = tmp_path / "pod.yaml"
    config.write_text("model:\n  path: gs://b/models/minilm\ndata:\n  train: gs://b/data/train.jsonl\n"
                      "output_dir: gs://b/runs/x\n")
    out = tmp_path / "resolved.yaml"
    assert main(["config", str(config), "steps=7", "--require-remote", "--out", str(out)]) == 0
    resolved = yaml.safe_load(out.read_text())
    assert resolved["steps"] == 7 and resolved["model"]["path"] == "gs://b/models/minilm"
    assert main(["config", str(config), f"eval.data={tmp_path}", "--require-remote", "--out", str(out)]) == 2
    assert yaml.safe_load(out.read_text())["steps"] == 7  # the refused call wrote nothing


@pytest.mark.parametrize("script,expect", [("gpu.sh", "jax\\[cuda12\\]"), ("local.sh", "pip install -q -e .")])
def test_gpu_and_local_dry_runs(script, expect):
    r = _run(script, "--dry-run", "configs/quickstart.yaml", "steps=5")
    assert r.returncode == 0, r.stderr
    assert expect in r.stdout
    assert r.stdout.strip().splitlines()[-1] == "+ .venv/bin/jaxretrieval train configs/quickstart.yaml steps=5"


def test_bad_arguments():
    r = _run("tpu_pod.sh", "--dry-run", "configs/x.yaml")
    assert r.returncode == 2 and "--name is required" in r.stderr
    r = _run("tpu_pod.sh", *POD[:-1], "/tmp/local", "--dry-run", "configs/x.yaml")
    assert r.returncode == 2 and "--stage must be a gs:// folder" in r.stderr
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
    config = tmp_path / "pod.yaml"
    config.write_text("model:\n  path: gs://b/model\ndata:\n  train: gs://b/train.jsonl\n")
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}", "PYTHON": sys.executable}
    r = subprocess.run(["bash", str(LAUNCH / "tpu_pod.sh"), "--name", "p", "--zone", "z", "--accelerator-type", "t",
                        "--runtime", "r", "--stage", "gs://b/run/launch", str(config), "output_dir=gs://b/run"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    calls = [c.split(" --")[0] for c in log.read_text().splitlines()]
    assert calls.count("compute tpus tpu-vm create p") == 2 and calls.count("compute tpus tpu-vm delete p") == 1
    trains = [c for c in log.read_text().splitlines() if "jaxretrieval train" in c]
    assert len(trains) == 2 and trains[0] == trains[1]  # the same command: it resumes from the checkpoint
    assert "was preempted: creating it again and resuming (1 of 3)" in r.stderr
    staged = [c for c in log.read_text().splitlines() if c.startswith("storage cp")]
    assert len(staged) == 1 and ".whl" in staged[0] and "config.yaml" in staged[0]  # staged once, before the slice


def test_slurm_job_runs_one_process_per_node_with_jax_distributed_from_slurm(tmp_path):
    """A fake srun starts the job step as SLURM would on two nodes (here both on this machine): the same command,
    with SLURM_PROCID 0 and 1 and the step's node list; jax.distributed reads those and the two processes train as
    one run (a second independent trainer would be refused by the run's lock)."""
    from hf_tiny import tiny_embedder_dir, tiny_pairs_jsonl

    model = tiny_embedder_dir(tmp_path / "model")
    data = tiny_pairs_jsonl(tmp_path / "d.jsonl", rows=32, negatives=2)
    config = tmp_path / "c.yaml"
    config.write_text(f"model:\n  path: {model}\ndata:\n  train: {data}\n  num_negatives: 1\nbatch_size: 8\n"
                      "steps: 2\nsave_every: 2\nshared_filesystem: true\n")
    srun = tmp_path / "bin" / "srun"
    srun.parent.mkdir()
    srun.write_text("""#!/usr/bin/env bash
while [[ "$1" == --* ]]; do shift; done  # srun's own options
for i in 0 1; do
  SLURM_PROCID=$i SLURM_LOCALID=$i SLURM_NTASKS=2 SLURM_STEP_NUM_NODES=2 SLURM_STEP_NODELIST=localhost "$@" \
    > "$LOGS/task$i.log" 2>&1 &
done
wait -n && wait -n
""")
    srun.chmod(0o755)
    env = {**os.environ, "PATH": f"{srun.parent}:{os.environ['PATH']}", "LOGS": str(tmp_path),
           "SLURM_JOB_ID": str(1000 + os.getpid() % 3000), "JAXRETRIEVAL_VENV": str(Path(sys.executable).parents[1]),
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    env.pop("JAX_COORDINATOR_ADDRESS", None)
    r = subprocess.run(["bash", str(LAUNCH / "slurm.sbatch"), str(config), f"output_dir={tmp_path / 'run'}"],
                       capture_output=True, text=True, timeout=600, env=env, cwd=LAUNCH.parent)
    logs = "".join((tmp_path / f"task{i}.log").read_text()[-1500:] for i in range(2))
    assert r.returncode == 0, r.stderr + logs
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.isdigit()) == ["2"]
    summary = json.loads((tmp_path / "task0.log").read_text().strip().splitlines()[-1])
    assert summary["step"] == 2
