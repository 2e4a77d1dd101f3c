"""A sweep's stability report: OUT/report.json (everything), OUT/report.md (tables a person reads) and
OUT/report.png (each setting's seeds against the learning rate or setting).

Per cell: the dev figures (final step, and the best step the run chose on dev) and the test figures (final model,
and the best-on-dev step's with keep_best), read from the cell's summary.json and metrics.jsonl. Per setting (the
cells that differ only by seed): mean, sample std (ddof=1), min and max over its seeds. Across learning rates (the
settings that differ only by learning_rate): the spread of their means. Flags name a seed std above
SEED_STD_FLAG or a learning-rate spread above LR_SPREAD_FLAG, in metric points (0.01 nDCG is 1 point).

Which figure each statistic uses: the chosen one. Dev is what every choice was made on; test is the model each
run would ship (its best-on-dev step with keep_best, else its final step), evaluated once.
"""

from __future__ import annotations

import json
import math
from typing import Any

from jaxretrieval.files import atomic_file, upath
from jaxretrieval.sweep.grid import SEED_KEY, Cell
from jaxretrieval.sweep.runner import FAILURE_FILE, is_finished

SEED_STD_FLAG = 0.5  # points
LR_SPREAD_FLAG = 1.0  # points
LR_KEY = "learning_rate"
SIDES = ("dev_final", "dev_best", "test_final", "test_best")


def cell_result(cell_dir, metrics: list[str]) -> dict[str, Any]:
    """{"status", and for a finished cell "best_step" and SIDE: {metric: value}} (a figure the run lacks is
    absent: a run without a test side has no test_*)."""
    d = upath(cell_dir)
    if not is_finished(d):
        failure = d / FAILURE_FILE
        if failure.exists():
            return {"status": "failed", **json.loads(failure.read_text())}
        return {"status": "not run" if not d.exists() else "unfinished"}
    summary = json.loads((d / "summary.json").read_text())
    side = summary.get("eval_side") or "eval"
    records = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines() if x.strip()]
    chosen = [r for r in records if any(k.startswith(f"{side}/") for k in r)]
    best = summary.get("best") or {}
    at_best = [r for r in chosen if r["step"] == best.get("step")]
    pick = lambda record, prefix: {m: record[f"{prefix}/{m}"] for m in metrics  # noqa: E731
                                   if f"{prefix}/{m}" in record} if record else {}
    out: dict[str, Any] = {"status": "finished", "side": side, "best_step": best.get("step"),
                           "dev_final": pick(chosen[-1] if chosen else None, side),
                           "dev_best": pick(at_best[-1] if at_best else None, side)}
    test = summary.get("test")
    if test:
        out["test_final"] = {m: test[m] for m in metrics if m in test}
        shipped = summary.get("test_at_best") or test
        out["test_best"] = {m: shipped[m] for m in metrics if m in shipped}
    return out


def stats(values: list[float]) -> dict[str, Any]:
    """n, mean, sample std (ddof=1; None for one value), min, max."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return {"n": n, "mean": mean, "std": std, "min": min(values), "max": max(values)}


def summarize(cells: list[Cell], results: dict[str, dict], metrics: list[str]) -> dict[str, Any]:
    """Per setting its seed statistics, per learning-rate family the spread of the means, and the flags."""
    groups: dict[tuple, list[Cell]] = {}
    for c in cells:
        groups.setdefault(c.group, []).append(c)
    settings = []
    for group, members in groups.items():
        done = [results[c.name] for c in members if results[c.name]["status"] == "finished"]
        entry: dict[str, Any] = {"setting": dict(group), "cells": [c.name for c in members],
                                 "finished": len(done)}
        for side in SIDES:
            for m in metrics:
                values = [r[side][m] for r in done if m in r.get(side, {})]
                if values:
                    entry.setdefault(side, {})[m] = stats(values)
        settings.append(entry)
    spreads, flags = [], []
    family: dict[tuple, list[dict]] = {}
    for entry in settings:
        rest = tuple((k, v) for k, v in entry["setting"].items() if k != LR_KEY)
        family.setdefault(rest, []).append(entry)
    for rest, entries in family.items():
        if len(entries) < 2 or not all(LR_KEY in e["setting"] for e in entries):
            continue
        for side in ("dev_best", "test_best"):
            for m in metrics:
                means = {e["setting"][LR_KEY]: e[side][m]["mean"] for e in entries if m in e.get(side, {})}
                if len(means) >= 2:
                    spread = 100 * (max(means.values()) - min(means.values()))
                    spreads.append({"setting": dict(rest), "side": side, "metric": m, "means": means,
                                    "spread_points": spread})
                    if spread > LR_SPREAD_FLAG:
                        worst = min(means, key=means.get)
                        flags.append(f"{side} {m}: learning-rate sensitivity {spread:.2f} points > {LR_SPREAD_FLAG} "
                                     f"({_label(dict(rest))}; worst {LR_KEY}={worst})")
    for entry in settings:
        for side in ("dev_best", "test_best"):
            for m, s in entry.get(side, {}).items():
                if s["std"] is not None and 100 * s["std"] > SEED_STD_FLAG:
                    flags.append(f"{side} {m}: seed std {100 * s['std']:.2f} points > {SEED_STD_FLAG} "
                                 f"({_label(entry['setting'])}, {s['n']} seeds)")
    return {"settings": settings, "lr_spreads": spreads, "flags": flags}


def _label(setting: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in setting.items()) or "the recipe"


def _fmt(x: float | None, points: bool = False) -> str:
    return "-" if x is None else (f"{100 * x:.2f}" if points else f"{x:.4f}")


def markdown(report: dict[str, Any]) -> str:
    metrics, lines = report["metrics"], [f"# Sweep report: {report['config']}", ""]
    lines += [f"Grid: {' '.join('--grid ' + g for g in report['grid'])}. Dev is what runs chose on; test is the "
              f"shipped model of each run (its best-on-dev step with keep_best, else its final step), evaluated "
              f"once. Std is over seeds (ddof=1), in the metric's units; spreads and flags in points (x100).", ""]
    lines += ["## Flags", ""] + ([f"- {f}" for f in report["flags"]] or ["- none"]) + [""]
    lines += ["## Per setting, over seeds", ""]
    head = "| setting | seeds | " + " | ".join(f"{s} {m} mean / std / min / max" for s in ("dev_best", "test_best")
                                               for m in metrics) + " |"
    lines += [head, "|" + "---|" * (2 + 2 * len(metrics))]
    for e in report["settings"]:
        cols = []
        for s in ("dev_best", "test_best"):
            for m in metrics:
                st = e.get(s, {}).get(m)
                cols.append(" / ".join(_fmt(st[k]) for k in ("mean", "std", "min", "max")) if st else "-")
        lines.append(f"| {_label(e['setting'])} | {e['finished']}/{len(e['cells'])} | " + " | ".join(cols) + " |")
    if report["lr_spreads"]:
        lines += ["", "## Across learning rates (spread of the means, points)", "",
                  "| setting | side | metric | means by learning_rate | spread |", "|---|---|---|---|---|"]
        for s in report["lr_spreads"]:
            means = ", ".join(f"{k}: {v:.4f}" for k, v in s["means"].items())
            lines.append(f"| {_label(s['setting'])} | {s['side']} | {s['metric']} | {means} | "
                         f"{s['spread_points']:.2f} |")
    lines += ["", "## Cells", "", "| cell | status | best step | " + " | ".join(f"{s} {m}" for s in SIDES
                                                                           for m in metrics) + " |",
              "|" + "---|" * (3 + len(SIDES) * len(metrics))]
    for name, r in report["cells"].items():
        cols = [_fmt(r.get(s, {}).get(m)) for s in SIDES for m in metrics]
        status = r["status"] if r["status"] != "failed" else f"failed: {r.get('error', '')}"[:160]
        lines.append(f"| {name} | {status} | {r.get('best_step', '-')} | " + " | ".join(cols) + " |")
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], png) -> None:
    """One panel per metric and side (dev_best, test_best): each cell a point, each setting's mean a bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics, settings = report["metrics"], report["settings"]
    fig, axes = plt.subplots(len(metrics), 2, figsize=(12, 3.6 * len(metrics)), squeeze=False)
    labels = [_label(e["setting"]) for e in settings]
    for row, m in enumerate(metrics):
        for col, side in enumerate(("dev_best", "test_best")):
            ax = axes[row][col]
            for x, e in enumerate(settings):
                values = [report["cells"][c].get(side, {}).get(m) for c in e["cells"]]
                values = [v for v in values if v is not None]
                if values:
                    ax.scatter([x] * len(values), values, s=18, alpha=0.7)
                    ax.hlines(sum(values) / len(values), x - 0.3, x + 0.3, colors="k")
            ax.set_xticks(range(len(settings)), labels, rotation=30, ha="right", fontsize=7)
            ax.set(title=f"{side} {m} (points: seeds, bar: mean)", ylabel=m)
    fig.tight_layout()
    with atomic_file(png, "wb") as f:
        fig.savefig(f, dpi=100, format="png")
    plt.close(fig)


def write_report(out: str, config: str, grid: list[str], cells: list[Cell], metrics: list[str]) -> dict[str, Any]:
    """Read every cell, write OUT/report.{json,md,png}; returns the report."""
    root = upath(out)
    results = {c.name: cell_result(root / "cells" / c.name, metrics) for c in cells}
    report = {"config": config, "grid": grid, "metrics": metrics, "seed_key": SEED_KEY, "cells": results,
              **summarize(cells, results, metrics)}
    with atomic_file(root / "report.json", "w") as f:
        json.dump(report, f, indent=1)
    with atomic_file(root / "report.md", "w") as f:
        f.write(markdown(report))
    if any(e.get("dev_best") or e.get("test_best") for e in report["settings"]):
        plot(report, root / "report.png")
    return report
