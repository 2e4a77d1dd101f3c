"""Shared fixtures. Eight simulated CPU devices are configured before JAX starts, for the sharding tests."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MINILM = SHARED / "models" / "all-MiniLM-L6-v2"
SCIFACT = SHARED / "data" / "scifact"


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    if not (MINILM / "model.safetensors").exists():
        pytest.skip(f"real model not found at {MINILM}")
    return MINILM


@pytest.fixture(scope="session")
def scifact_dir() -> Path:
    if not (SCIFACT / "corpus.jsonl").exists():
        pytest.skip(f"SciFact not found at {SCIFACT}")
    return SCIFACT
