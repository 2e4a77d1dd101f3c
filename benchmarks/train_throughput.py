"""Training throughput, pairs/s: jaxretrieval's jit step vs a sentence-transformers training step, on the same
SciFact batches (the configs/scifact_mnrl.yaml recipe: batch 32, query/doc max length 64/256, InfoNCE / MNRL with
scale 20, AdamW), same CPU. Compilation of each new batch shape is excluded from ours and reported apart.

    python benchmarks/train_throughput.py [--steps 6] [--model DIR]
Prints a table: seconds/step, pairs/s, achieved GFLOP/s (3 x forward matmul FLOPs of the real tokens) and the
fraction of the machine's fp32 peak, and the ratio ours / sentence-transformers.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MINILM, PEAK_GFLOPS, REPO, SCIFACT, encoder_forward_flops, print_table  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(MINILM))
    ap.add_argument("--data", default=str(SCIFACT))
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--first-step", type=int, default=0)
    ap.add_argument("--skip-st", action="store_true", help="time only jaxretrieval (e.g. to compare settings)")
    ap.add_argument("overrides", nargs="*", help="config key=value overrides, e.g. model.dropout=false")
    args = ap.parse_args()

    import jax
    import numpy as np

    from jaxretrieval.config import load_config
    from jaxretrieval.convert.hf_format import read_hf_config
    from jaxretrieval.train.loop import global_batch, init_train_state, setup, train_step_for

    out = tempfile.mkdtemp()
    cfg = load_config(REPO / "configs" / "scifact_mnrl.yaml",
                      [f"output_dir={out}", f"model.path={args.model}", f"data.train={args.data}", "eval.data=",
                       *args.overrides])
    run = setup(cfg)
    ts = init_train_state(run)
    state, batch_sh = ts.state, ts.batch_shardings
    step_fn, teacher_params = train_step_for(run, ts)
    steps = range(args.first_step, args.first_step + args.steps)
    hf = read_hf_config(args.model)
    src = run.source

    def useful_flops(step):
        q, p, _ = src.step_rows(step)
        lengths = list(src.queries.lengths[q]) + list(src.docs.lengths[p])
        return 3 * encoder_forward_flops(hf, lengths)

    flops = sum(useful_flops(s) for s in steps)
    seen, compile_s, ours_s = set(), 0.0, 0.0
    for s in steps:
        batch = src.batch(s)
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

    n = len(steps) * cfg.batch_size
    print(f"jaxretrieval: {ours_s / len(steps):.2f} s/step, {n / ours_s:.3f} pairs/s "
          f"(compile {compile_s:.0f}s, {len(seen)} shapes)", flush=True)
    if args.skip_st:
        return
    import torch
    from sentence_transformers import SentenceTransformer, losses

    model = SentenceTransformer(args.model, device="cpu")
    model.max_seq_length = cfg.model.max_doc_length
    model.train()
    loss_fn = losses.MultipleNegativesRankingLoss(model, scale=1.0 / cfg.loss.temperature)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=0.01)
    st_s = 0.0
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

    rows = []
    for name, secs, note in [("sentence-transformers", st_s, f"torch {torch.__version__}, "
                              f"{torch.get_num_threads()} threads"),
                             ("jaxretrieval", ours_s, f"compile {compile_s:.0f}s for {len(seen)} shapes, "
                              f"{jax.device_count()} device(s)")]:
        rows.append({"engine": name, "steps": len(steps), "s/step": secs / len(steps), "pairs/s": n / secs,
                     "GFLOP/s": flops / secs / 1e9, "of peak": flops / secs / 1e9 / PEAK_GFLOPS, "notes": note})
    rows[1]["ratio"] = st_s / ours_s
    print(f"batch={cfg.batch_size} max_length query/doc={cfg.model.max_query_length}/{cfg.model.max_doc_length} "
          f"steps {steps.start}..{steps.stop - 1}; loss at last step {float(np.asarray(metrics['loss'])):.4f}")
    print_table(rows, ["engine", "steps", "s/step", "pairs/s", "GFLOP/s", "of peak", "ratio", "notes"])


if __name__ == "__main__":
    main()
