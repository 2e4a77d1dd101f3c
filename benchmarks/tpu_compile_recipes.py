"""The shipped recipes at realistic scale, compiled (never run) for TPU slices from this CPU host with libtpu:
per-device memory against HBM, FLOPs per step and the throughput they imply at 40% MFU. What a user needs to size
a pod before paying for it.

    TPU_SKIP_MDS_QUERY=1 JAX_PLATFORMS=cpu python benchmarks/tpu_compile_recipes.py [--only NAME]

Qwen2-1.5B stands in as a directory of its shape (config.json and a tokenizer, no weights: tests/hf_tiny.py);
all-MiniLM-L6-v2 is the real directory. The distillation's teacher vector files are written at the widths the
config expects (two teachers of 384 each: head_dim 768).
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from common import REPO, print_table  # noqa: E402
from hf_tiny import qwen2_1p5b_dir  # noqa: E402
from jaxretrieval.config import MeshConfig, load_config  # noqa: E402
from jaxretrieval.train.tpu_compile import GIB, compile_encode_step, compile_train_step, slice_for  # noqa: E402

MFU = 0.4


def recipes(tmp: Path):
    qwen = qwen2_1p5b_dir(tmp / "qwen2-1.5b")
    teachers = []
    for k in range(2):
        np.save(tmp / f"t{k}.npy", np.zeros((2, 384), np.float32))
        teachers.append(str(tmp / f"t{k}.npy"))
    common = [f"output_dir={tmp}/unused", "data.train=x"]
    return [
        ("stella_stage3, Qwen2-1.5B student, bf16", "configs/stella_stage3.yaml",
         [*common, f"model.path={qwen}", "model.compute_dtype=bfloat16",
          f"distill.teacher_vectors=[{', '.join(teachers)}]"],
         "v5e:4x4", MeshConfig(1, 16)),
        ("colbert_contrastive, all-MiniLM-L6-v2", "configs/colbert_contrastive.yaml", common, "v5e:2x4",
         MeshConfig(8, 1)),
        ("llm_reranker, Qwen2-1.5B, bf16", "configs/llm_reranker.yaml",
         [*common, f"model.path={qwen}", "model.compute_dtype=bfloat16"], "v5p:2x2x1", MeshConfig(1, 4)),
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="", help="run the recipes whose name contains this")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for name, config, overrides, topology, mesh in recipes(Path(d)):
            if args.only not in name:
                continue
            cfg = load_config(REPO / config, overrides)
            built = slice_for(cfg, topology, mesh)
            for step in (compile_train_step, compile_encode_step):
                t = time.time()
                r = step(cfg, topology, built=built)
                rows.append({"recipe": name, "step": r.what, "slice": f"{topology} ({r.chips} chips)",
                             "mesh": f"data={r.mesh['data']} fsdp={r.mesh['fsdp']}", "batch": r.batch_size,
                             "GiB/device": f"{r.total_bytes / GIB:.2f} of {r.hbm_per_device / GIB:.0f}",
                             "TFLOP/device/step": f"{r.flops / 1e12:.3g}" + (" (lower bound)" if r.loops else ""),
                             f"at {MFU:.0%} MFU": f"{r.batch_size / r.step_seconds(MFU):,.0f} {r.rows}/s",
                             "compile s": f"{time.time() - t:.0f}"})
                print(rows[-1], flush=True)
    print()
    print_table(rows, list(rows[0]))


if __name__ == "__main__":
    main()
