"""Helpers shared by the benchmark scripts: paths, a FLOP model for BERT-family encoders, table printing."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MINILM = SHARED / "models" / "all-MiniLM-L6-v2"
SCIFACT = SHARED / "data" / "scifact"
# Measured fp32 matmul throughput of the 2-core development machine (see the README); override with
# JAXRETRIEVAL_PEAK_GFLOPS on other hardware.
PEAK_GFLOPS = float(os.environ.get("JAXRETRIEVAL_PEAK_GFLOPS", "175"))


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
