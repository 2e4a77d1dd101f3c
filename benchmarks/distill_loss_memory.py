"""Peak temporary memory of the Stella losses' forward + backward at batch 128 (XLA's compiled memory analysis),
for several relative-loss chunk sizes, against the size of the full pairs-of-pairs tensor.

    python benchmarks/distill_loss_memory.py [--batch 128]
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from jaxretrieval.losses.distill import stella_loss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    b = args.batch
    rng = np.random.default_rng(0)
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    teacher = jnp.asarray(unit(rng.normal(size=(b, 768))), jnp.float32)
    dims = (768, 512, 256, 128)
    students = {d: jnp.asarray(unit(rng.normal(size=(b, d))), jnp.float32) for d in dims}
    p = b * (b - 1) // 2
    print(f"batch {b}: {p} text pairs; one full pairs-of-pairs float32 tensor = {p * p * 4 / 2**20:.0f} MiB")
    print("| relative chunk (rows) | peak temp MiB, loss + grad over dims " + "/".join(map(str, dims)) + " |")
    print("|---|---|")
    for chunk in (64, 256, 1024, 4096, p):
        def total(ss):
            out = 0.0
            for d in dims:
                out = out + stella_loss(ss[d], teacher, full_dimension=d == 768, chunk=chunk)[0]
            return out
        compiled = jax.jit(jax.value_and_grad(total)).lower(students).compile()
        temp = compiled.memory_analysis().temp_size_in_bytes
        print(f"| {chunk}{' (unchunked)' if chunk == p else ''} | {temp / 2**20:.1f} |")


if __name__ == "__main__":
    main()
