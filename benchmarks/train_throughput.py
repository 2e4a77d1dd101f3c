"""Training throughput, pairs/s: jaxretrieval's jit step vs a sentence-transformers training step, on the same
SciFact batches (the configs/scifact_mnrl.yaml recipe: batch 32, query/doc max length 64/256, InfoNCE / MNRL with
scale 20, AdamW), same CPU. Compilation of each new batch shape is excluded from ours and reported apart.

    python benchmarks/train_throughput.py [--steps 6] [--model DIR] [--variant "data.packing=true" ...]
Prints a table: seconds/step, pairs/s, achieved GFLOP/s (3 x forward matmul FLOPs of the real tokens) and the
fraction of the matmul ceiling measured in the same run (same engine and dtype), the fraction of computed tokens
that are real (not padding), and the ratio
ours / sentence-transformers, for each variant of our config (space-separated overrides; default: padded and
packed batches) on the same steps.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (MINILM, REPO, SCIFACT, cpu_description, encoder_forward_flops, matmul_ceiling,  # noqa: E402
                    print_table)


def token_counts(batch) -> tuple[int, int]:
    """(real, computed) tokens of one batch, padded or packed."""
    real = computed = 0
    for key in ("query", "pos", "neg", "doc"):
        marks = batch.get(f"{key}_segments", batch.get(f"{key}_mask"))
        if marks is not None:
            real, computed = real + int((marks > 0).sum()), computed + marks.size
    return real, computed


def time_ours(args, overrides: list[str]):
    """Seconds for args.steps steps of our jit step under these overrides, with its compile time, shapes, token
    counts, and the source (for the batches' texts)."""
    import jax

    from jaxretrieval.config import load_config
    from jaxretrieval.train.loop import global_batch, init_train_state, setup, train_step_for

    out = tempfile.mkdtemp()
    cfg = load_config(REPO / "configs" / "scifact_mnrl.yaml",
                      [f"output_dir={out}", f"model.path={args.model}", f"data.train={args.data}", "eval.data=",
                       *args.overrides, *overrides])
    run = setup(cfg)
    ts = init_train_state(run)
    state, batch_sh = ts.state, ts.batch_shardings
    step_fn, teacher_params = train_step_for(run, ts)
    seen, compile_s, ours_s, real, computed = set(), 0.0, 0.0, 0, 0
    for s in range(args.first_step, args.first_step + args.steps):
        batch = run.source.batch(s)
        r, c = token_counts(batch)
        real, computed = real + r, computed + c
        shapes = tuple(v.shape for v in batch.values())
        if shapes not in seen:  # compile (and run once) outside the timed region
            t0 = time.perf_counter()
            state, _ = jax.block_until_ready(step_fn(state, global_batch(batch, batch_sh), teacher_params))
            compile_s += time.perf_counter() - t0
            seen.add(shapes)
        t0 = time.perf_counter()
        state, metrics = step_fn(state, global_batch(batch, batch_sh), teacher_params)
        jax.block_until_ready(metrics)
        ours_s += time.perf_counter() - t0
    return cfg, run.source, ours_s, compile_s, len(seen), real / computed, float(metrics["loss"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(MINILM))
    ap.add_argument("--data", default=str(SCIFACT))
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--first-step", type=int, default=0)
    ap.add_argument("--skip-st", action="store_true", help="time only jaxretrieval (e.g. to compare settings)")
    ap.add_argument("--variant", action="append", default=None,
                    help='overrides of one timed variant, space-separated (repeatable; default: "" and '
                         '"data.packing=true")')
    ap.add_argument("overrides", nargs="*", help="config key=value overrides for every variant")
    args = ap.parse_args()
    args.variant = args.variant if args.variant is not None else ["", "data.packing=true"]

    import jax

    from jaxretrieval.convert.hf_format import read_hf_config

    print(cpu_description(), flush=True)
    ceiling = matmul_ceiling()
    print("matmul ceiling, GFLOP/s: " + ", ".join(f"{k} {v:.0f}" for k, v in ceiling.items()), flush=True)
    steps = range(args.first_step, args.first_step + args.steps)
    hf = read_hf_config(args.model)
    results = []
    for variant in args.variant:
        cfg, src, ours_s, compile_s, shapes, real_fraction, loss = time_ours(args, variant.split())
        n = len(steps) * cfg.batch_size
        print(f"jaxretrieval [{variant or 'defaults'}]: {ours_s / len(steps):.2f} s/step, {n / ours_s:.3f} pairs/s "
              f"(compile {compile_s:.0f}s, {shapes} shapes), real tokens {real_fraction:.1%}, last loss {loss:.4f}",
              flush=True)
        results.append((variant, ours_s, compile_s, shapes, real_fraction))

    def useful_flops(step):
        q, p, _ = src.step_rows(step)
        lengths = list(src.queries.lengths[q]) + list(src.docs.lengths[p])
        return 3 * encoder_forward_flops(hf, lengths)

    flops = sum(useful_flops(s) for s in steps)
    n = len(steps) * cfg.batch_size
    if args.skip_st:
        return
    import torch
    from sentence_transformers import SentenceTransformer, losses

    model = SentenceTransformer(args.model, device="cpu")
    model.max_seq_length = cfg.model.max_doc_length
    model.train()
    loss_fn = losses.MultipleNegativesRankingLoss(model, scale=1.0 / cfg.loss.temperature)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=0.01)
    st_s, st_real_tokens, st_computed_tokens = 0.0, 0, 0
    for i, s in enumerate([steps[0]] + list(steps)):  # first one is a warm-up
        q, p, _ = src.step_rows(s)
        t0 = time.perf_counter()
        feats = [model.tokenize([src.pairs.query_texts[j] for j in q]),
                 model.tokenize([src.pairs.doc_texts[j] for j in p])]
        loss = loss_fn(feats, None)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if i:
            st_s += time.perf_counter() - t0
            st_real_tokens += sum(int(f["attention_mask"].sum()) for f in feats)
            st_computed_tokens += sum(f["attention_mask"].numel() for f in feats)

    st_real = st_real_tokens / st_computed_tokens
    rows = [{"engine": "sentence-transformers", "engine_kind": "torch float32", "secs": st_s, "real": st_real,
             "notes": f"torch {torch.__version__}, {torch.get_num_threads()} threads"}]
    for variant, secs, compile_s, shapes, real_fraction in results:
        kind = "jax bfloat16" if "compute_dtype=bfloat16" in variant else "jax float32"
        rows.append({"engine": f"jaxretrieval {variant}".strip(), "engine_kind": kind, "secs": secs,
                     "real": real_fraction,
                     "ratio": st_s / secs,
                     "notes": f"compile {compile_s:.0f}s for {shapes} shapes, {jax.device_count()} device(s)"})
    for r in rows:
        secs = r.pop("secs")
        r.update({"steps": len(steps), "s/step": secs / len(steps), "pairs/s": n / secs, "GFLOP/s": flops / secs / 1e9,
                  "of ceiling": flops / secs / 1e9 / ceiling[r.pop("engine_kind")],
                  "real tokens": f"{r.pop('real'):.1%}"})
    print(f"batch={cfg.batch_size} max_length query/doc={cfg.model.max_query_length}/{cfg.model.max_doc_length} "
          f"steps {steps.start}..{steps.stop - 1}")
    print_table(rows, ["engine", "steps", "s/step", "pairs/s", "GFLOP/s", "of ceiling", "real tokens", "ratio",
                       "notes"])


if __name__ == "__main__":
    main()
