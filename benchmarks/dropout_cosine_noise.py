"""How far dropout moves a model's in-batch cosines, next to the Stella relative loss's margin and the target's
own gaps between pairs: the reason configs/stella_stage3.yaml trains with `model.dropout: false`.

The relative loss asks the student to order pairs of pairs the way the teacher does, with a 0.015 margin. If
dropout moves a pair's cosine by more than that, the order it sees for close pairs is mostly noise.

    .venv/bin/python benchmarks/dropout_cosine_noise.py runs/distill4/stage2 runs/distill4/texts.jsonl \\
        runs/distill4/teacher.npy runs/distill4/teacher2.npy
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from jaxretrieval.door import open_model
from jaxretrieval.data.jsonl import read_texts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="training run directory (its latest checkpoint is used)")
    ap.add_argument("texts", help="jsonl of {text} rows, aligned with the teacher files")
    ap.add_argument("teachers", nargs="+", help="teacher .npy files; the target cosine is their mean")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--draws", type=int, default=8)
    ap.add_argument("--margin", type=float, default=0.015)
    args = ap.parse_args()

    loaded = open_model(args.run)
    texts = read_texts(args.texts)
    rows = np.sort(np.random.default_rng(0).choice(len(texts), args.batch, replace=False))
    batch = next(loaded.tokenizer.batches([texts[i] for i in rows], args.batch))
    assert (batch.index >= 0).all(), "one full batch, no padding rows"
    order = rows[batch.index]  # batches() sorts by length; keep the teacher rows in the same order
    inputs = [jnp.asarray(a) for a in (batch.input_ids, batch.attention_mask, batch.token_type_ids, batch.pool_mask)]
    forward = jax.jit(lambda key: loaded.model(*inputs, dropout_key=key))
    pairs = np.triu_indices(args.batch, 1)

    def cosines(v: jax.Array) -> np.ndarray:
        v = np.asarray(v, np.float64)
        return (v @ v.T)[pairs]

    clean = cosines(forward(None))  # no key: dropout off, as served
    noisy = np.stack([cosines(forward(jax.random.key(k))) for k in range(args.draws)])
    target = np.mean([cosines(np.load(t)[order].astype(np.float32)) for t in args.teachers], axis=0)
    std = noisy.std(0).mean()
    gaps = np.abs(target[:, None] - target[None, :])[np.triu_indices(len(target), 1)]
    print("| what | value |\n|---|---|")
    print(f"| in-batch pairs | {len(clean)} |")
    print(f"| std of a pair's cosine over {args.draws} dropout draws (mean / median) | {std:.4f} / "
          f"{np.median(noisy.std(0)):.4f} |")
    print(f"| mean shift of a pair's cosine under dropout | {(noisy.mean(0) - clean).mean():+.4f} |")
    print(f"| relative loss margin | {args.margin} |")
    print(f"| target's gap between two pairs: median | {np.median(gaps):.4f} |")
    print(f"| share of those gaps under twice the dropout std | {(gaps < 2 * std).mean():.1%} |")


if __name__ == "__main__":
    main()
