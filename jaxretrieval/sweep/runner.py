"""Running a sweep's cells: each an ordinary `jaxretrieval train` in its own process and folder, one after another.

A cell is a separate process so that it is exactly the run a user would start by hand (same compile, same memory,
nothing carried over from the previous cell), and so that a crash or a divergence ends that cell only. What makes
the sweep resumable is the runs' own state: a cell whose run_status.json says finished (and that wrote its
summary.json) is skipped, an interrupted one is started again with the same command and resumes from its
checkpoint, and a failed one is recorded in OUT/cells/NAME/sweep_failure.json with its error line while the sweep
goes on (rerunning the sweep tries it again). A signal that stops the sweep stops the running cell at a step
boundary, with a checkpoint, and the sweep ends there.

Several machines or device groups share a sweep with `--part K/N`: each launch runs every N-th cell, into the
same OUT (a shared filesystem or gs://), and the report covers whatever cells have finished.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from jaxretrieval.files import atomic_file, is_remote, upath
from jaxretrieval.sweep.grid import Cell
from jaxretrieval.train.run_control import read_status

FAILURE_FILE = "sweep_failure.json"
LOG_FILE = "train.log"

# (the argv of one cell's run, the file its output goes to) -> exit code
CellRunner = Callable[[list[str], str], int]


def run_in_subprocess(argv: list[str], log_path: str) -> int:
    """The default CellRunner: the cell's `jaxretrieval train` as a child process, its output appended to its log."""
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"\n$ {' '.join(argv)}\n")
        log.flush()
        return subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy()).returncode


def cell_argv(config: str, overrides: list[str], cell: Cell, cell_dir: str) -> list[str]:
    return [sys.executable, "-m", "jaxretrieval.cli", "train", config, *overrides, *cell.overrides,
            f"output_dir={cell_dir}"]


def is_finished(cell_dir) -> bool:
    status = read_status(cell_dir) if upath(cell_dir).exists() else None
    return bool(status) and status.get("status") == "finished" and (upath(cell_dir) / "summary.json").exists()


def last_error(log_path: str) -> str:
    """The line a failed run ended on (its `jaxretrieval train: error: ...`), or the log's last line."""
    try:
        lines = [x for x in open(log_path, encoding="utf-8").read().splitlines() if x.strip()]
    except OSError:
        return "no log"
    errors = [x for x in lines if x.startswith("jaxretrieval train:")]
    return (errors or lines or ["no output"])[-1][:500]


def log_path(out: str, cell: Cell) -> Path:
    """Where a cell's output goes: its folder, or a local one when OUT is on gs:// (a child writes a local file)."""
    if is_remote(out):
        return Path(tempfile.gettempdir()) / "jaxretrieval-sweep" / cell.name / LOG_FILE
    return Path(str(upath(out) / "cells" / cell.name / LOG_FILE))


@contextlib.contextmanager
def signals_to_the_cell():
    """While a cell runs, SIGINT / SIGTERM (which reach the cell's process too, and stop it at a step boundary with
    a checkpoint) only mark the sweep as stopping, so it ends after that cell instead of dying under it."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def run_cells(config: str, overrides: list[str], cells: list[Cell], out: str, part: tuple[int, int] = (1, 1),
              runner: CellRunner = run_in_subprocess, say: Callable[[str], None] | None = None) -> dict[str, str]:
    """Run this part's cells that have not finished; returns {cell name: finished | skipped | failed | stopped}
    for the cells of this part. One progress line per cell goes to `say` (stderr by default)."""
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    with signals_to_the_cell() as stop:
        return _run_cells(config, overrides, cells, out, part, runner, say, stop)


def _run_cells(config, overrides, cells, out, part, runner, say, stop) -> dict[str, str]:
    k, n = part
    mine = [c for i, c in enumerate(cells) if i % n == k - 1]
    outcome: dict[str, str] = {}
    for i, cell in enumerate(mine, 1):
        cell_dir = upath(out) / "cells" / cell.name
        head = f"sweep [{i}/{len(mine)}] {cell.name}:"
        if is_finished(cell_dir):
            outcome[cell.name] = "skipped"
            say(f"{head} finished before, skipped")
            continue
        cell_dir.mkdir(parents=True, exist_ok=True)
        log = log_path(out, cell)
        log.parent.mkdir(parents=True, exist_ok=True)
        resuming = read_status(cell_dir) is not None
        started = time.monotonic()
        say(f"{head} {'resuming' if resuming else 'starting'} (log: {log})")
        rc = runner(cell_argv(config, overrides, cell, str(cell_dir)), str(log))
        seconds = time.monotonic() - started
        status = (read_status(cell_dir) or {}).get("status")
        if rc == 0 and is_finished(cell_dir):
            (cell_dir / FAILURE_FILE).unlink(missing_ok=True)
            outcome[cell.name] = "finished"
            say(f"{head} finished in {seconds:.0f} s{headline(cell_dir)}")
        elif stop.is_set() or status == "interrupted":
            outcome[cell.name] = "stopped"
            say(f"{head} stopped by a signal after {seconds:.0f} s; run the same sweep command to resume")
        else:
            error = last_error(str(log)) if rc else f"exited 0 but its run status is {status!r}"
            with atomic_file(cell_dir / FAILURE_FILE, "w") as f:
                json.dump({"exit_code": rc, "error": error, "seconds": round(seconds, 1)}, f)
            outcome[cell.name] = "failed"
            say(f"{head} FAILED (exit {rc}) after {seconds:.0f} s: {error}")
        if stop.is_set() or outcome[cell.name] == "stopped":
            break
    return outcome


def headline(cell_dir) -> str:
    """`; dev ndcg@10 0.6512 (step 28), test 0.6601` from a finished cell's summary.json."""
    summary = json.loads((upath(cell_dir) / "summary.json").read_text())
    best, parts = summary.get("best"), []
    if best:
        parts.append(f"{best.get('side', 'eval')} {best['metric']} {best['value']:.4f} (step {best['step']})")
        test = summary.get("test_at_best") or summary.get("test") or {}
        if best["metric"] in test:
            parts.append(f"test {test[best['metric']]:.4f}")
    return "; " + ", ".join(parts) if parts else ""
