"""run_training hands the loop the config's evaluation: it runs at step 0 (eval_every > 0) and at the end, picks
the best step by eval.metric, and is refused before any step when the config asks for an impossible one."""

import json

import pytest

from hf_tiny import tiny_embedder_dir, tiny_fox_beir, tiny_pairs_jsonl
from jaxretrieval.config import load_config
from jaxretrieval.errors import InputError
from jaxretrieval.training import run_training


def _cfg(root, *extra):
    model = tiny_embedder_dir(root / "m")
    data = tiny_pairs_jsonl(root / "d.jsonl")
    return load_config(None, [f"output_dir={root / 'run'}", f"model.path={model}", f"data.train={data}",
                              "batch_size=8", "steps=2", "mesh.data=1", "learning_rate=1e-3", *extra])


def test_evaluation_is_handed_to_the_loop(tmp_path):
    beir = tiny_fox_beir(tmp_path / "beir")
    summary = run_training(_cfg(tmp_path, f"eval.data={beir}", "eval_every=1"))
    steps = [h["step"] for h in summary["eval_history"]]
    assert steps == [0, 1, 2]
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "eval/ndcg@10" in r]
    assert [r["step"] for r in evals] == steps and all(r["eval/num_queries"] == 2 for r in evals)
    best = max(summary["eval_history"], key=lambda h: h["ndcg@10"])
    assert summary["best"]["value"] == best["ndcg@10"]


def test_no_eval_data_means_no_evaluation(tmp_path):
    summary = run_training(_cfg(tmp_path))
    assert summary["eval_history"] == [] and summary["best"] is None and summary["step"] == 2


def test_an_impossible_eval_fails_before_any_step(tmp_path):
    beir = tiny_fox_beir(tmp_path / "beir")
    with pytest.raises(InputError, match=r"\[eval.metric\]"):
        run_training(_cfg(tmp_path, f"eval.data={beir}", "eval.metric=sts_spearman"))
    with pytest.raises(InputError, match="qrels"):
        run_training(_cfg(tmp_path, f"eval.data={beir}", "eval.split=dev"))
    assert not (tmp_path / "run").exists()
