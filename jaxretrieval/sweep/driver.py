"""`jaxretrieval sweep`: expand the grid, run this launch's cells, write the report over every cell of the grid."""

from __future__ import annotations

import json
from typing import Any, Callable

from jaxretrieval.errors import InputError
from jaxretrieval.files import atomic_file, upath
from jaxretrieval.sweep.grid import expand, parse_part
from jaxretrieval.sweep.report import write_report
from jaxretrieval.sweep.runner import CellRunner, run_cells, run_in_subprocess


def run_sweep(config: str, grids: list[str], overrides: list[str], part: str = "1/1", metrics: list[str] = (),
              runner: CellRunner = run_in_subprocess, say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """{"outcome": {cell: finished | skipped | failed | stopped}, "report": the report}. The config's output_dir
    (after `overrides`) is the sweep's OUT; cells go to OUT/cells/NAME. metrics: what the report tabulates
    (default: eval.metric)."""
    base, cells = expand(config, grids, overrides)
    if not base.has_dev and not (base.eval.data or base.eval.sts):
        raise InputError("a sweep compares its cells' evaluations: set a dev split (data.dev_queries, eval.dev_data "
                         "or eval.dev_sts) and/or eval.data", config, field="eval.data")
    out = base.output_dir
    plan = {"config": config, "grid": list(grids), "overrides": list(overrides), "cells": [c.name for c in cells]}
    plan_path = upath(out) / "sweep.json"
    if plan_path.exists():
        before = json.loads(plan_path.read_text())
        if before.get("overrides") != plan["overrides"] or before.get("config") != config:
            raise InputError(f"OUT holds a sweep of {before.get('config')} with overrides {before.get('overrides')}; "
                             f"its finished cells would be mixed with this one's: use another output_dir",
                             plan_path, field="output_dir")
    with atomic_file(plan_path, "w") as f:
        json.dump(plan, f, indent=1)
    outcome = run_cells(config, list(overrides), cells, out, parse_part(part), runner, say)
    report = write_report(out, config, list(grids), cells, list(metrics) or [base.eval.metric])
    return {"outcome": outcome, "report": report}
