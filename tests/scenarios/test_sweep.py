"""A real sweep through the command line: two seeds of a tiny run with a dev split, each cell its own
`jaxretrieval train` process; the report reads their summaries, and the same command again skips both."""

import json

from hf_tiny import tiny_embedder_dir, tiny_train_beir
from jaxretrieval.cli import main


def test_a_sweep_runs_reports_and_resumes(tmp_path, capsys):
    beir = tiny_train_beir(tmp_path / "beir")
    config = tmp_path / "c.yaml"
    config.write_text(f"output_dir: {tmp_path / 'sweep'}\nmodel: {{path: {tiny_embedder_dir(tmp_path / 'm')}}}\n"
                      f"data: {{train: {beir}, dev_queries: 8}}\neval: {{data: [{beir}]}}\nbatch_size: 8\n"
                      f"steps: 2\neval_every: 1\nkeep_best: true\nlearning_rate: 1.0e-3\nmesh: {{data: 1}}\n")
    argv = ["sweep", str(config), "--grid", "seed=0,1", "--metrics", "ndcg@10,recall@10"]
    assert main(argv) == 0
    out = capsys.readouterr()
    assert json.loads(out.out.splitlines()[-1])["cells"] == {"seed=0": "finished", "seed=1": "finished"}
    assert "sweep [2/2] seed=1: finished in" in out.err and "dev ndcg@10" in out.err
    report = json.loads((tmp_path / "sweep" / "report.json").read_text())
    (setting,) = report["settings"]
    assert setting["finished"] == 2 and setting["test_best"]["ndcg@10"]["n"] == 2
    for seed in (0, 1):
        cell = tmp_path / "sweep" / "cells" / f"seed={seed}"
        summary = json.loads((cell / "summary.json").read_text())
        assert report["cells"][f"seed={seed}"]["test_best"]["ndcg@10"] == summary["test_at_best"]["ndcg@10"]
        assert (cell / "best" / "config.yaml").exists() and (cell / "train.log").exists()
    assert (tmp_path / "sweep" / "report.png").exists() and "## Flags" in (tmp_path / "sweep" / "report.md").read_text()
    assert main(argv) == 0
    assert capsys.readouterr().err.count("finished before, skipped") == 2
