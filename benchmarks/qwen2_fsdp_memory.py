"""Compile (never run) a training step of a Qwen2 embedder of 1.5B-parameter shape on an 8-way fsdp mesh of
simulated CPU devices and print XLA's per-device memory analysis. Parameters and optimizer state are abstract
(jax.ShapeDtypeStruct), so nothing of model size is ever allocated.

    python benchmarks/qwen2_fsdp_memory.py [--layers 28] [--batch 8] [--length 128] [--grad-cache 0]
"""

import argparse
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from jaxretrieval.config import MeshConfig, OptimizerConfig  # noqa: E402
from jaxretrieval.losses.contrastive import infonce_loss  # noqa: E402
from jaxretrieval.models.embedder import Embedder, EmbedderSpec  # noqa: E402
from jaxretrieval.models.qwen2 import Qwen2Config, Qwen2Encoder  # noqa: E402
from jaxretrieval.train.grad_cache import grad_cache_value_and_grad  # noqa: E402
from jaxretrieval.train.mesh import batch_sharding, make_mesh, replicated, tree_shardings  # noqa: E402
from jaxretrieval.train.optimizer import make_optimizer  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=28)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--grad-cache", type=int, default=0)
    ap.add_argument("--dtype", default="bfloat16")
    args = ap.parse_args()
    # Qwen2-1.5B's shape (as gte-Qwen2-1.5B / stella_en_1.5B_v5)
    cfg = Qwen2Config(vocab_size=151936, hidden_size=1536, num_hidden_layers=args.layers, num_attention_heads=12,
                      num_key_value_heads=2, intermediate_size=8960, rope_theta=1e6)
    dtype = jnp.bfloat16 if args.dtype == "bfloat16" else jnp.float32
    mesh = make_mesh(MeshConfig(data=1, fsdp=8))
    abstract = nnx.eval_shape(lambda: Embedder(Qwen2Encoder(cfg, dtype=dtype), EmbedderSpec(("lasttoken",), True)))
    graphdef, params = nnx.split(abstract)
    n_params = sum(x.size for x in jax.tree.leaves(params))
    tx, _ = make_optimizer(OptimizerConfig(), 1e-5, 1000)
    opt = jax.eval_shape(tx.init, params)
    p_sh, o_sh = tree_shardings(params, mesh), tree_shardings(opt, mesh)
    spec = lambda tree, sh: jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, sh)  # noqa: E731
    b, length = args.batch, args.length
    batch = {k: jax.ShapeDtypeStruct((b, length), jnp.int32, sharding=batch_sharding(mesh, 2))
             for k in ("q_ids", "q_mask", "d_ids", "d_mask")}

    def step(params, opt_state, batch):
        def encode(p, name, inputs, key):
            return nnx.merge(graphdef, p)(inputs["ids"], inputs["mask"])

        def loss_from_reps(reps):
            return infonce_loss(reps["q"], reps["d"], jnp.arange(b)), {}

        streams = {"q": {"ids": batch["q_ids"], "mask": batch["q_mask"]},
                   "d": {"ids": batch["d_ids"], "mask": batch["d_mask"]}}
        if args.grad_cache:
            (loss, _), grads = grad_cache_value_and_grad(encode, loss_from_reps, params, streams, args.grad_cache)
        else:
            def full(p):
                return loss_from_reps({k: encode(p, k, v, None) for k, v in streams.items()})[0]
            loss, grads = jax.value_and_grad(full)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    compiled = jax.jit(step, out_shardings=(p_sh, o_sh, replicated(mesh)), donate_argnums=(0, 1)).lower(
        spec(params, p_sh), spec(opt, o_sh), batch).compile()
    m = compiled.memory_analysis()
    gib = 2**30
    print(f"Qwen2 {n_params / 1e9:.2f}B params ({args.layers} layers), fsdp=8 over simulated CPU devices, "
          f"batch {b} queries + {b} docs x {args.length} tokens, {args.dtype} compute, fp32 master weights + Adam, "
          f"grad_cache={args.grad_cache}")
    print("| per device | GiB |\n|---|---|")
    for name in ("argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes", "temp_size_in_bytes",
                 "generated_code_size_in_bytes"):
        print(f"| {name.removesuffix('_in_bytes')} | {getattr(m, name) / gib:.2f} |")
    print(f"(unsharded fp32 params + Adam moments alone: {n_params * 12 / gib:.1f} GiB)")


if __name__ == "__main__":
    main()
