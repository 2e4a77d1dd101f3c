"""run_sweep: the plan written to OUT/sweep.json, the cells run, the report written; a sweep that cannot compare
anything, or one that would mix with another sweep's cells, is refused before any cell runs."""

import json

import pytest

from sweep_fakes import output_dir, setting, write_finished
from jaxretrieval.errors import InputError
from jaxretrieval.sweep.driver import run_sweep


def _config(tmp_path, eval_part="eval: {data: [beir]}\n"):
    path = tmp_path / "c.yaml"
    path.write_text(f"output_dir: {tmp_path / 'out'}\nmodel: {{path: m}}\ndata: {{train: d.jsonl}}\n{eval_part}")
    return str(path)


def _runner(argv, log):
    write_finished(output_dir(argv), [0.5, 0.5 + int(setting(argv, "seed")) / 100], 0.6)
    return 0


def test_a_sweep_writes_its_plan_runs_and_reports(tmp_path):
    result = run_sweep(_config(tmp_path), ["seed=0,1"], ["steps=2"], runner=_runner, say=lambda _: None)
    assert result["outcome"] == {"seed=0": "finished", "seed=1": "finished"}
    plan = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert plan["cells"] == ["seed=0", "seed=1"] and plan["overrides"] == ["steps=2"]
    assert result["report"]["settings"][0]["dev_best"]["ndcg@10"]["mean"] == pytest.approx(0.505)
    with pytest.raises(InputError, match="another output_dir"):
        run_sweep(_config(tmp_path), ["seed=0,1"], ["steps=3"], runner=_runner, say=lambda _: None)


def test_a_sweep_without_evaluation_is_refused(tmp_path):
    with pytest.raises(InputError, match="compares its cells' evaluations"):
        run_sweep(_config(tmp_path, ""), ["seed=0,1"], [], runner=_runner, say=lambda _: None)
    assert not (tmp_path / "out").exists()
