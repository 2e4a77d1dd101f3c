"""Helpers shared by the benchmark scripts: paths, a FLOP model for BERT-family encoders, table printing."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MINILM = SHARED / "models" / "all-MiniLM-L6-v2"
SCIFACT = SHARED / "data" / "scifact"


def cpu_description() -> str:
    """The CPU model and the matrix/bf16 features that decide which engine is faster on it."""
    name, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and name == "unknown CPU":
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = [f for f in ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return f"{name}, {os.cpu_count()} cores, {' '.join(wanted) or 'no AVX-512/AMX'}"


def matmul_ceiling(m: int = 8192, k: int = 384, n: int = 1536, repeats: int = 10) -> dict[str, float]:
    """GFLOP/s of one [m, k] x [k, n] product (MiniLM's feed-forward shape at batch 32 x 256 tokens) measured now,
    by JAX and by torch, in float32 and bfloat16: the ceiling each engine's encoder could reach on this machine."""
    import time

    import jax
    import jax.numpy as jnp

    out = {}
    for name, dtype in (("float32", jnp.float32), ("bfloat16", jnp.bfloat16)):
        a, b = jnp.full((m, k), 0.01, dtype), jnp.full((k, n), 0.01, dtype)
        f = jax.jit(lambda a, b: a @ b)
        f(a, b).block_until_ready()
        t0 = time.perf_counter()
        for _ in range(repeats):
            r = f(a, b)
        r.block_until_ready()
        out[f"jax {name}"] = 2 * m * k * n * repeats / (time.perf_counter() - t0) / 1e9
    try:
        import torch
    except ImportError:
        return out
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        a, b = torch.full((m, k), 0.01, dtype=dtype), torch.full((k, n), 0.01, dtype=dtype)
        a @ b
        t0 = time.perf_counter()
        for _ in range(repeats):
            a @ b
        out[f"torch {name}"] = 2 * m * k * n * repeats / (time.perf_counter() - t0) / 1e9
    return out


def encoder_forward_flops(hf_config: dict, lengths) -> float:
    """Matmul FLOPs of one forward over sequences of the given (padded) lengths: dense layers + attention."""
    h, f, n = hf_config["hidden_size"], hf_config["intermediate_size"], hf_config["num_hidden_layers"]
    per_token = 2 * n * (4 * h * h + 2 * h * f)
    return float(sum(per_token * L + n * 4 * L * L * h for L in lengths))


def print_table(rows: list[dict], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    print(" | ".join(c.ljust(widths[c]) for c in columns))
    print("-|-".join("-" * widths[c] for c in columns))
    for r in rows:
        print(" | ".join(_fmt(r.get(c)).ljust(widths[c]) for c in columns))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)
