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


def _dev_cfg(root, *extra):
    from hf_tiny import tiny_train_beir

    beir = tiny_train_beir(root / "beir")
    return load_config(None, [f"output_dir={root / 'run'}", f"model.path={tiny_embedder_dir(root / 'm')}",
                              f"data.train={beir}", "data.dev_queries=8", f"eval.data={beir}", "batch_size=8",
                              "steps=3", "eval_every=1", "mesh.data=1", "learning_rate=1e-3", *extra])


def test_a_dev_split_chooses_and_the_test_side_is_evaluated_once(tmp_path):
    summary = run_training(_dev_cfg(tmp_path, "keep_best=true"))
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    dev = [r for r in records if "dev/ndcg@10" in r]
    test = [r for r in records if any(k.startswith("test/") for k in r)]
    assert [r["step"] for r in dev] == [0, 1, 2, 3] and all(r["dev/num_queries"] == 8 for r in dev)
    assert not any(k.startswith("eval/") for r in records for k in r)
    assert len(test) == 1 and test[0]["step"] == 3 and test[0]["test/num_queries"] == 4
    best = max(dev, key=lambda r: (r["dev/ndcg@10"], -r["step"]))
    assert summary["best"]["step"] == best["step"] == test[0]["best_step"] and summary["best"]["side"] == "dev"
    assert summary["test"]["ndcg@10"] == test[0]["test/ndcg@10"]
    assert summary["test_at_best"]["ndcg@10"] == test[0]["test_at_best/ndcg@10"]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["test"] == summary["test"]
    # OUT/best is a run directory of the best step: opened like any run, it gives that step's test figures
    from jaxretrieval.door import open_model
    from jaxretrieval.eval.evaluate import RunEvaluator

    bundle = open_model(str(tmp_path / "run" / "best"))
    assert bundle.trained["step"] == best["step"]
    again = RunEvaluator(load_config(tmp_path / "run" / "config.yaml")).test(bundle)
    assert again["ndcg@10"] == pytest.approx(summary["test_at_best"]["ndcg@10"], abs=1e-6)


def test_select_on_test_keeps_the_old_behaviour(tmp_path):
    summary = run_training(_dev_cfg(tmp_path, "eval.select_on=test"))
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("eval/ndcg@10" in r for r in records) and not any(k.startswith(("dev/", "test/")) for r in records
                                                                  for k in r)
    assert "test" not in summary and summary["eval_side"] == "eval"
