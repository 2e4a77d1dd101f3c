"""One-run accelerator benchmark: our jit train step (the dense task's InfoNCE with AdamW, bf16 compute with
float32 master weights) and our encode forward for MiniLM-, BERT-base- and Qwen2-0.5B-size encoders (full and
LoRA), with examples/s and MFU; and, where torch with CUDA is installed, the same recipes in
sentence-transformers / PyTorch on the same device in the same run.

    python benchmarks/gpu_suite.py [--smoke] [--steps 10]     (benchmarks/gpu_suite.sh wraps it with a deadline)
Weights are random (speed does not depend on them); inputs are random token ids at full length, so every token
is real. FLOPs are XLA's own count for the compiled step; MFU = FLOPs / step time / the device's peak (bf16 dense,
from PEAK_TFLOPS by device kind; --peak-tflops overrides). --smoke runs tiny shapes for two steps on any backend
(the test suite runs it on CPU), which checks the script, not the speed.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table  # noqa: E402

PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "TPU v5 lite": 197.0, "TPU v5p": 459.0,
               "TPU v4": 275.0, "TPU v6": 918.0}

# (name, family, encoder config, LoRA rank, batch, length)
RECIPES = [
    ("all-MiniLM-L6-v2", "bert", dict(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                                      intermediate_size=1536), 0, 256, 256),
    ("BERT-base size", "bert", dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                    intermediate_size=3072), 0, 256, 256),
    ("Qwen2-0.5B size", "qwen2", dict(vocab_size=151936, hidden_size=896, num_hidden_layers=24,
                                      num_attention_heads=14, num_key_value_heads=2, intermediate_size=4864), 0, 64,
     256),
    ("Qwen2-0.5B size, LoRA r16", "qwen2", dict(vocab_size=151936, hidden_size=896, num_hidden_layers=24,
                                                num_attention_heads=14, num_key_value_heads=2,
                                                intermediate_size=4864), 16, 64, 256),
]
SMOKE = dict(vocab_size=500, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)


def peak_tflops(device, override: float | None) -> float | None:
    if override:
        return override
    kind = getattr(device, "device_kind", "")
    return next((v for k, v in PEAK_TFLOPS.items() if k.lower() in kind.lower()), None)


def build_embedder(family: str, hf: dict, lora_rank: int, dtype):
    from flax import nnx

    from jaxretrieval.config import DEFAULT_LORA_TARGETS
    from jaxretrieval.models.bert import BertConfig, BertEncoder
    from jaxretrieval.models.embedder import Embedder, EmbedderSpec
    from jaxretrieval.models.lora import add_lora
    from jaxretrieval.models.qwen2 import Qwen2Config, Qwen2Encoder

    if family == "bert":
        encoder = BertEncoder(BertConfig(**hf), dtype=dtype, rngs=nnx.Rngs(0))
        spec = EmbedderSpec(pooling=("mean",), normalize=True)
    else:
        encoder = Qwen2Encoder(Qwen2Config(**{"num_key_value_heads": hf["num_attention_heads"], **hf}), dtype=dtype,
                               rngs=nnx.Rngs(0))
        spec = EmbedderSpec(pooling=("lasttoken",), normalize=True)
    if lora_rank:
        add_lora(encoder, lora_rank, 16.0, DEFAULT_LORA_TARGETS)
    return Embedder(encoder, spec)


def time_ours(family, hf, lora_rank, batch, length, steps, peak):
    """(train examples/s, train MFU, encode docs/s) of our step and forward."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from jaxretrieval.config import load_config
    from jaxretrieval.train.dense_task import DenseTask
    from jaxretrieval.train.loop import make_train_step, split_trainable
    from jaxretrieval.train.mesh import batch_sharding, make_mesh, replicated, tree_shardings
    from jaxretrieval.train.optimizer import make_optimizer

    overrides = ["model.compute_dtype=bfloat16", f"batch_size={batch}", "data.num_negatives=0",
                 f"model.max_query_length={length}", f"model.max_doc_length={length}"]
    if lora_rank:
        overrides += [f"model.lora_rank={lora_rank}"]
    cfg = load_config(None, ["output_dir=/tmp/gpu_suite", "model.path=unused", "data.train=unused", *overrides])
    model = build_embedder(family, hf, lora_rank, jnp.bfloat16)
    if lora_rank:
        cfg = dataclasses.replace(cfg, optimizer=dataclasses.replace(cfg.optimizer, trainable="lora"))
    mesh = make_mesh(cfg.mesh)
    graphdef, params, frozen = split_trainable(model, cfg)
    optimizer = make_optimizer(cfg.optimizer, cfg.learning_rate, 1000)
    opt_state = optimizer.tx.init(params)
    counters = ("step", "bad_in_a_row", "skipped_steps")
    state_sh = {"params": tree_shardings(params, mesh), "frozen": tree_shardings(frozen, mesh),
                "opt_state": tree_shardings(opt_state, mesh), **{c: replicated(mesh) for c in counters}}
    state = jax.device_put({"params": params, "frozen": frozen, "opt_state": opt_state,
                            **{c: jnp.zeros((), jnp.int32) for c in counters}}, state_sh)
    rng = np.random.default_rng(0)
    ids = lambda: rng.integers(5, hf["vocab_size"], (batch, length)).astype(np.int32)  # noqa: E731
    ones = np.ones((batch, length), np.int32)
    arrays = {"query_ids": ids(), "query_mask": ones, "pos_ids": ids(), "pos_mask": ones,
              "neg_ids": np.zeros((batch, 0, length), np.int32), "neg_mask": np.zeros((batch, 0, length), np.int32),
              "query_text": np.arange(batch, dtype=np.int32), "pos_doc": np.arange(batch, dtype=np.int32),
              "neg_doc": np.zeros((batch, 0), np.int32)}
    batch_sh = {k: batch_sharding(mesh, v.ndim) for k, v in arrays.items()}
    device_batch = jax.device_put(arrays, batch_sh)
    task = DenseTask(cfg, source=None, main_dim=model.dim)
    step = make_train_step(graphdef, optimizer, cfg, task, state_sh, batch_sh, {}, mesh)
    compiled = step.lower(state, device_batch, {}).compile()
    flops = float((compiled.cost_analysis() or {}).get("flops", 0.0))
    state, metrics = compiled(state, device_batch, {})
    jax.block_until_ready(metrics)
    t0 = time.perf_counter()
    for _ in range(steps):
        state, metrics = compiled(state, device_batch, {})
    jax.block_until_ready(metrics)
    step_s = (time.perf_counter() - t0) / steps
    train = batch / step_s
    mfu = flops / step_s / (peak * 1e12) if peak and flops else None

    model = nnx.merge(graphdef, state["params"], state["frozen"])
    g, st = nnx.split(model)
    forward = jax.jit(lambda st, i, m: nnx.merge(g, st)(i, m))
    doc_ids, doc_mask = jnp.asarray(ids()), jnp.asarray(ones)
    jax.block_until_ready(forward(st, doc_ids, doc_mask))
    t0 = time.perf_counter()
    for _ in range(steps):
        out = forward(st, doc_ids, doc_mask)
    jax.block_until_ready(out)
    encode = batch * steps / (time.perf_counter() - t0)
    return train, mfu, encode, float(metrics["loss"])


def time_torch(family, hf, lora_rank, batch, length, steps):
    """(train examples/s, encode docs/s) of the same recipe in PyTorch (transformers model, bf16 autocast, MNRL
    over mean / last-token pooled vectors, AdamW), or None without torch+CUDA."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available() or lora_rank:
        return None
    import transformers

    if family == "bert":
        model = transformers.BertModel(transformers.BertConfig(**hf)).cuda()
    else:
        model = transformers.Qwen2Model(transformers.Qwen2Config(**hf)).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5)
    ids = lambda: torch.randint(5, hf["vocab_size"], (batch, length), device="cuda")  # noqa: E731
    mask = torch.ones(batch, length, dtype=torch.long, device="cuda")
    q, d = ids(), ids()

    def embed(x):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            h = model(input_ids=x, attention_mask=mask).last_hidden_state
        v = h.float().mean(1) if family == "bert" else h[:, -1].float()
        return torch.nn.functional.normalize(v, dim=-1)

    def step():
        scores = embed(q) @ embed(d).T * 20.0
        loss = torch.nn.functional.cross_entropy(scores, torch.arange(batch, device="cuda"))
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    train = batch * steps / (time.perf_counter() - t0)
    with torch.no_grad():
        embed(d)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            embed(d)
        torch.cuda.synchronize()
    return train, batch * steps / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="tiny shapes, two steps: checks the script on any backend")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--only", default=None, help="run only recipes whose name contains this")
    args = ap.parse_args()

    import jax

    device = jax.devices()[0]
    peak = peak_tflops(device, args.peak_tflops)
    print(f"device: {device.device_kind} x {jax.device_count()} ({jax.default_backend()}), "
          f"peak bf16 {peak or 'unknown'} TFLOP/s, jax {jax.__version__}", flush=True)
    recipes = RECIPES
    if args.smoke:
        recipes = [(f"{n} (smoke)", fam, {**SMOKE, **({"num_key_value_heads": 2} if fam == "qwen2" else {})}, lora,
                    8, 32) for n, fam, _, lora, _, _ in RECIPES]
        args.steps = 2
    if args.only:
        recipes = [r for r in recipes if args.only in r[0]]
    rows = []
    for name, family, hf, lora, batch, length in recipes:
        t0 = time.perf_counter()
        train, mfu, encode, loss = time_ours(family, hf, lora, batch, length, args.steps, peak)
        row = {"recipe": name, "batch x len": f"{batch}x{length}", "train ex/s": train,
               "MFU": None if mfu is None else f"{mfu:.1%}", "encode docs/s": encode, "loss": loss}
        ref = None if args.smoke else time_torch(family, hf, lora, batch, length, args.steps)
        if ref is not None:
            row.update({"torch train ex/s": ref[0], "train ratio": train / ref[0], "torch encode docs/s": ref[1],
                        "encode ratio": encode / ref[1]})
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        print(f"{name}: {row}", flush=True)
    print_table(rows, ["recipe", "batch x len", "train ex/s", "MFU", "encode docs/s", "torch train ex/s",
                       "train ratio", "torch encode docs/s", "encode ratio", "loss", "seconds"])


if __name__ == "__main__":
    main()
