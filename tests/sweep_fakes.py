"""Cells without training: files shaped as a finished run leaves them (run_status.json, summary.json, metrics.jsonl),
with chosen figures, for the runner's and the report's tests."""

import json
from pathlib import Path


def write_finished(cell_dir: Path, dev: list[float], test_final: float, test_best: float | None = None) -> None:
    """A run that evaluated dev at steps 0, 10, 20, ... with these nDCG@10 values, then its test side once."""
    cell_dir.mkdir(parents=True, exist_ok=True)
    steps = [10 * i for i in range(len(dev))]
    best = max(range(len(dev)), key=lambda i: (dev[i], -i))
    records = [{"step": s, "dev/ndcg@10": v, "dev/recall@100": v / 2, "best_step": steps[best]}
               for s, v in zip(steps, dev)]
    test = {"ndcg@10": test_final, "recall@100": test_final / 2}
    summary = {"step": steps[-1], "eval": {"ndcg@10": dev[-1]}, "eval_side": "dev", "test": test,
               "best": {"step": steps[best], "metric": "ndcg@10", "value": dev[best], "side": "dev"}}
    if test_best is not None:
        summary["test_at_best"] = {"ndcg@10": test_best, "recall@100": test_best / 2}
    (cell_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (cell_dir / "summary.json").write_text(json.dumps(summary))
    (cell_dir / "run_status.json").write_text(json.dumps({"status": "finished", "step": steps[-1]}))


def output_dir(argv: list[str]) -> Path:
    return Path(next(a for a in argv if a.startswith("output_dir=")).split("=", 1)[1])


def setting(argv: list[str], key: str) -> str:
    return next(a for a in argv if a.startswith(f"{key}=")).split("=", 1)[1]
