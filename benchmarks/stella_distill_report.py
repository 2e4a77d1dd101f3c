"""Summary table of the Stella distillation run (benchmarks/stella_distill_run.sh): SciFact test nDCG@10 and STS-B
test Spearman for teacher, student before, after each stage, every Matryoshka dim, and the stage-3 seed spread."""

import json
import sys
from pathlib import Path

import numpy as np


def last_eval(run: Path) -> dict | None:
    """The run's last test-side record (eval/... without a dev split, test/... when the run chose on dev); None for
    a run trained without eval (e.g. `eval.data=` to save time)."""
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    for side in ("test", "eval"):
        evals = [r for r in records if f"{side}/ndcg@10" in r]
        if evals:
            return {k.removeprefix(f"{side}/"): v for k, v in evals[-1].items() if k.startswith(f"{side}/")}
    return None


def main(root: Path):
    teacher_sts = json.loads((root / "teacher_sts.json").read_text())["sts_spearman"]
    student_sts = json.loads((root / "student_sts.json").read_text())["sts_spearman"]
    # SciFact nDCG@10 of the untouched models: measured with `jaxretrieval eval` (student) and with
    # sentence-transformers (teacher, ../shared/data/README.md; our MPNet matches it to 3e-7).
    rows = [("teacher all-mpnet-base-v2", 0.6557, teacher_sts), ("student all-MiniLM-L6-v2 (before)", 0.6451,
                                                                   student_sts)]
    for stage in ("stage1", "stage2"):
        e = last_eval(root / stage)
        rows.append((f"student after {stage}", *((e["ndcg@10"], e["sts_spearman"]) if e else (None, None))))
    runs = sorted(root.glob("stage3_seed*"), key=lambda p: int(p.name.removeprefix("stage3_seed")))
    seeds = [last_eval(run) for run in runs]
    e = seeds[0]
    rows.append(("student after stage3 (seed 0), 768", e["ndcg@10"], e["sts_spearman"]))
    for dim in sorted({int(k.split("/")[0][3:]) for k in e if k.startswith("dim")}, reverse=True):
        rows.append((f"  Matryoshka {dim}", e[f"dim{dim}/ndcg@10"], e[f"dim{dim}/sts_spearman"]))
    print("| model | SciFact nDCG@10 | STS-B Spearman |\n|---|---|---|")
    for name, ndcg, sts in rows:
        print(f"| {name} | {'not evaluated' if ndcg is None else f'{ndcg:.4f}'} | "
              f"{'not evaluated' if sts is None else f'{sts * 100:.2f}'} |")
    n = np.array([s["ndcg@10"] for s in seeds])
    st = np.array([s["sts_spearman"] for s in seeds]) * 100
    print(f"\nstage 3 over {len(seeds)} seeds: nDCG@10 {n.mean():.4f} ± {n.std():.4f} (min {n.min():.4f}, max "
          f"{n.max():.4f}); STS {st.mean():.2f} ± {st.std():.2f}")
    for label, (t, s0, s3) in {"SciFact": (rows[0][1], rows[1][1], n.mean()),
                               "STS-B": (teacher_sts, student_sts, st.mean() / 100)}.items():
        # one decimal: a whole-number rounding would put 49.6% on a 50% line
        print(f"{label}: gap closed {(s3 - s0) / (t - s0) * 100:.1f}% (teacher {t:.4f}, before {s0:.4f}, "
              f"after {s3:.5f})")
    for dim in sorted({int(k.split("/")[0][3:]) for k in e if k.startswith("dim")}):
        share = np.array([s[f"dim{dim}/ndcg@10"] / s["ndcg@10"] for s in seeds]) * 100
        nd = np.array([s[f"dim{dim}/ndcg@10"] for s in seeds])
        print(f"dim {dim}: nDCG@10 {nd.mean():.4f} ± {nd.std():.4f}, {share.mean():.1f}% ± {share.std():.1f} of the "
              f"full-dimension nDCG@10 over {len(seeds)} seeds (min {share.min():.1f}%)")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/distill"))
