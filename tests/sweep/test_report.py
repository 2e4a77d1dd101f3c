"""The stability report against a hand computation on fake cells: per-setting seed statistics, the spread across
learning rates, the flags, and the three files."""

import json
import math

import pytest

from sweep_fakes import write_finished
from jaxretrieval.sweep.grid import Cell
from jaxretrieval.sweep.report import stats, write_report

LRS, SEEDS = ("1e-05", "3e-05"), ("0", "1", "2")
CELLS = [Cell((("learning_rate", lr), ("seed", s))) for lr in LRS for s in SEEDS]
TEST_AT_BEST = {"1e-05": [0.60, 0.61, 0.65], "3e-05": [0.630, 0.632, 0.634]}


def test_stats_by_hand():
    s = stats([0.60, 0.61, 0.65])
    assert s["n"] == 3 and s["mean"] == pytest.approx(0.62) and s["min"] == 0.60 and s["max"] == 0.65
    assert s["std"] == pytest.approx(math.sqrt((0.02 ** 2 + 0.01 ** 2 + 0.03 ** 2) / 2))  # ddof=1: 0.026458
    assert stats([0.5])["std"] is None


def test_report_of_a_sweep(tmp_path):
    for c in CELLS:
        lr, seed = c.setting("learning_rate"), int(c.setting("seed"))
        if (lr, seed) == ("3e-05", 2):
            d = tmp_path / "cells" / c.name
            d.mkdir(parents=True)
            (d / "sweep_failure.json").write_text(json.dumps({"exit_code": 3, "error": "diverged"}))
            continue
        write_finished(tmp_path / "cells" / c.name, [0.5, 0.6, 0.55], 0.58, TEST_AT_BEST[lr][seed])
    report = write_report(str(tmp_path), "c.yaml", ["learning_rate=x/3,x", "seed=0,1,2"], CELLS,
                          ["ndcg@10", "recall@100"])
    cells = report["cells"]
    assert cells["learning_rate=3e-05,seed=2"] == {"status": "failed", "exit_code": 3, "error": "diverged"}
    first = cells["learning_rate=1e-05,seed=0"]
    assert first["best_step"] == 10 and first["dev_best"] == {"ndcg@10": 0.6, "recall@100": 0.3}
    assert first["dev_final"]["ndcg@10"] == 0.55 and first["test_final"]["ndcg@10"] == 0.58
    low, high = report["settings"]
    assert low["setting"] == {"learning_rate": "1e-05"} and low["finished"] == 3 and high["finished"] == 2
    t = low["test_best"]["ndcg@10"]
    assert (t["mean"], t["std"], t["min"], t["max"]) == pytest.approx((0.62, 0.0264575, 0.60, 0.65), abs=1e-6)
    assert high["test_best"]["ndcg@10"]["mean"] == pytest.approx(0.631)  # its two finished seeds
    assert low["dev_best"]["ndcg@10"]["std"] == 0
    (spread,) = [s for s in report["lr_spreads"] if s["side"] == "test_best" and s["metric"] == "ndcg@10"]
    assert spread["spread_points"] == pytest.approx(1.1)  # 100 * (0.631 - 0.62)
    flags = report["flags"]
    assert any("test_best ndcg@10: learning-rate sensitivity 1.10 points" in f for f in flags)
    assert any("test_best ndcg@10: seed std 2.65 points" in f and "learning_rate=1e-05" in f for f in flags)
    assert not any("learning_rate=3e-05, " in f and "seed std" in f and "ndcg" in f for f in flags)  # 0.14 points
    assert not any(f.startswith("dev_best") for f in flags)
    assert json.loads((tmp_path / "report.json").read_text())["flags"] == flags
    md = (tmp_path / "report.md").read_text()
    assert "| learning_rate=1e-05 | 3/3 | 0.6000 / 0.0000 / 0.6000 / 0.6000 |" in md and "failed: diverged" in md
    assert (tmp_path / "report.png").stat().st_size > 1000
