"""The sweep's cells run one by one: a finished cell is skipped, an interrupted one is run again (and resumes), a
failed one is recorded with its error and the sweep goes on; a signal ends the sweep after the running cell."""

import json
import sys

from sweep_fakes import output_dir, setting, write_finished
from jaxretrieval.sweep.grid import Cell
from jaxretrieval.sweep.runner import FAILURE_FILE, cell_argv, last_error, run_cells

CELLS = [Cell((("seed", str(s)),)) for s in range(4)]


def test_cells_run_skip_fail_and_resume(tmp_path):
    calls, lines = [], []

    def runner(argv, log):
        out, seed = output_dir(argv), int(setting(argv, "seed"))
        calls.append(seed)
        if seed == 1:  # fails
            open(log, "a").write("Traceback...\njaxretrieval train: error: data.train [x]: broken\n")
            return 2
        if seed == 2 and calls.count(2) == 1:  # cut off (a preemption): its run says interrupted
            (out / "run_status.json").write_text(json.dumps({"status": "interrupted", "step": 10}))
            return 0
        write_finished(out, [0.5, 0.6], 0.55)
        return 0

    write_finished(tmp_path / "cells" / "seed=3", [0.4], 0.4)  # finished by an earlier launch
    outcome = run_cells("c.yaml", ["steps=2"], CELLS, str(tmp_path), runner=runner, say=lines.append)
    assert outcome == {"seed=0": "finished", "seed=1": "failed", "seed=2": "stopped"}
    assert calls == [0, 1, 2] and "stopped by a signal" in lines[-1]
    failure = json.loads((tmp_path / "cells" / "seed=1" / FAILURE_FILE).read_text())
    assert failure["exit_code"] == 2 and failure["error"] == "jaxretrieval train: error: data.train [x]: broken"
    assert any("FAILED (exit 2)" in x and "broken" in x for x in lines)
    assert any("seed=0: finished in" in x and "dev ndcg@10 0.6000 (step 10), test 0.5500" in x for x in lines)
    # the same command again: seed=0 and seed=3 are skipped, seed=1 is tried again (and fails), seed=2 resumes
    lines.clear()
    outcome = run_cells("c.yaml", ["steps=2"], CELLS, str(tmp_path), runner=runner, say=lines.append)
    assert outcome == {"seed=0": "skipped", "seed=1": "failed", "seed=2": "finished", "seed=3": "skipped"}
    assert calls == [0, 1, 2, 1, 2] and any("seed=2: resuming" in x for x in lines)


def test_parts_split_the_cells(tmp_path):
    seen = []

    def runner(argv, log):
        seen.append(setting(argv, "seed"))
        write_finished(output_dir(argv), [0.5], 0.5)
        return 0

    run_cells("c.yaml", [], CELLS, str(tmp_path), part=(2, 2), runner=runner, say=lambda _: None)
    assert seen == ["1", "3"]


def test_a_cell_is_an_ordinary_train_command(tmp_path):
    argv = cell_argv("c.yaml", ["steps=2"], CELLS[1], str(tmp_path / "cells" / "seed=1"))
    assert argv[:5] == [sys.executable, "-m", "jaxretrieval.cli", "train", "c.yaml"]
    assert argv[5:] == ["steps=2", "seed=1", f"output_dir={tmp_path / 'cells' / 'seed=1'}"]
    log = tmp_path / "log"
    log.write_text("step 1\nsome warning\n")
    assert last_error(str(log)) == "some warning"
