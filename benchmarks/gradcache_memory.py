"""Peak memory and step time of the dense InfoNCE train step with and without GradCache, at growing global batch
sizes (real all-MiniLM-L6-v2, short lengths), on this machine's devices.

Peak memory is XLA's compiled estimate (arguments + temporaries of the step); time is the mean of timed steps
after --warmup untimed ones, all through the ahead-of-time compiled step (so no compilation is timed). The plain
step is skipped where its estimate exceeds --max-gib. A batch that is a single chunk takes the plain path inside
GradCache (there is nothing to cache), so the ratio there is ~1.

    python benchmarks/gradcache_memory.py [--batches 64,256,1024,4096] [--chunk 64] [--length 32] [--steps 2]
        [--warmup 1]
"""

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MINILM  # noqa: E402

from jaxretrieval.convert.st_format import load_embedder  # noqa: E402
from jaxretrieval.losses.contrastive import infonce_loss  # noqa: E402
from jaxretrieval.train.grad_cache import grad_cache_value_and_grad  # noqa: E402


def make_step(graphdef, tx, chunk: int):
    def step(params, opt_state, batch):
        def encode(p, name, inputs, key):
            return nnx.merge(graphdef, p)(inputs["ids"], inputs["mask"])

        streams = {"query": {"ids": batch["query_ids"], "mask": batch["query_mask"]},
                   "doc": {"ids": batch["pos_ids"], "mask": batch["pos_mask"]}}
        ids = jnp.arange(batch["pos_ids"].shape[0])

        def loss_from_reps(reps):
            return infonce_loss(reps["query"], reps["doc"], ids, 0.05), {}

        if chunk:
            (loss, _), grads = grad_cache_value_and_grad(encode, loss_from_reps, params, streams, chunk)
        else:
            (loss, _), grads = jax.value_and_grad(
                lambda p: loss_from_reps({n: encode(p, n, s, None) for n, s in streams.items()}), has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss
    return jax.jit(step, donate_argnums=(0, 1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="64,256,1024,4096")
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--length", type=int, default=32)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--max-gib", type=float, default=16.0)
    args = ap.parse_args()
    loaded = load_embedder(MINILM)
    graphdef, params = nnx.split(loaded.model)
    tx = optax.adamw(1e-5)
    rng = np.random.default_rng(0)
    print(f"all-MiniLM-L6-v2, query and doc length {args.length}, GradCache chunk {args.chunk}, "
          f"{jax.device_count()} x {jax.devices()[0].platform}")
    print("| batch | plain peak GiB | plain s/step | GradCache peak GiB | GradCache s/step | time/example ratio |")
    print("|---|---|---|---|---|---|")
    for b in (int(x) for x in args.batches.split(",")):
        ids = rng.integers(1000, 20000, size=(b, args.length)).astype(np.int32)
        batch = {"query_ids": ids, "query_mask": np.ones_like(ids), "pos_ids": ids[::-1].copy(),
                 "pos_mask": np.ones_like(ids), "neg_ids": np.zeros((b, 0, args.length), np.int32),
                 "neg_mask": np.zeros((b, 0, args.length), np.int32), "query_text": np.arange(b, dtype=np.int32),
                 "pos_doc": np.arange(b, dtype=np.int32), "neg_doc": np.zeros((b, 0), np.int32)}
        row = []
        for chunk in (0, args.chunk):
            step = make_step(graphdef, tx, chunk)
            opt = tx.init(params)
            compiled = step.lower(params, opt, batch).compile()
            m = compiled.memory_analysis()
            peak = (m.argument_size_in_bytes + m.temp_size_in_bytes) / 2**30
            if chunk == 0 and peak > args.max_gib:
                row += [f"{peak:.2f} (not run)", "-"]
                continue
            p, o = jax.tree.map(jnp.copy, params), tx.init(params)
            for _ in range(args.warmup):
                p, o, loss = compiled(p, o, batch)
                jax.block_until_ready(loss)
            start = time.perf_counter()
            for _ in range(args.steps):
                p, o, loss = compiled(p, o, batch)
            jax.block_until_ready(loss)
            row += [f"{peak:.2f}", f"{(time.perf_counter() - start) / args.steps:.2f}"]
        ratio = "-" if row[1] == "-" else f"{float(row[3]) / float(row[1]):.2f}"
        print(f"| {b} | {' | '.join(row)} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
