"""The one evaluation dispatch: each bundle kind gets its evaluation, and an evaluation it cannot have is one clear
error, the same for `jaxretrieval eval` and for training."""

import pytest

from hf_tiny import tiny_bert, tiny_embedder_dir, tiny_fox_beir
from jaxretrieval.bundles import COLBERT, EMBEDDER, RERANKER
from jaxretrieval.config import ColBERTConfig, load_config
from jaxretrieval.convert.cross_encoder_format import load_reranker
from jaxretrieval.convert.pylate_format import load_colbert
from jaxretrieval.convert.st_format import load_embedder
from jaxretrieval.data.beir import load_beir
from jaxretrieval.errors import InputError
from jaxretrieval.eval.evaluate import RunEvaluator, check_evaluable, evaluate, metric_names
from jaxretrieval.eval.rerank import dense_first_stage
from jaxretrieval.eval.retrieval import evaluate_dense


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    return {"dense": load_embedder(tiny_embedder_dir(root / "st")), "hf": tiny_bert(root / "hf"),
            "data": load_beir(tiny_fox_beir(root / "beir")), "beir": root / "beir", "st": root / "st"}


def test_each_kind_gets_its_evaluation(models):
    data, dense = models["data"], models["dense"]
    assert evaluate(dense, data) == evaluate_dense(dense, data, 64)
    colbert = load_colbert(models["hf"], ColBERTConfig(dim=8, query_prefix="", doc_prefix=""))
    assert {"ndcg@10", "index_mib"} <= set(evaluate(colbert, data))
    reranker = load_reranker(models["hf"], max_length=32)
    out = evaluate(reranker, data, first_stage=lambda: dense_first_stage(dense, data, 4), rerank_top=4)
    assert out["rerank_top"] == 4 and {"ndcg@10", "first_stage/ndcg@10"} <= set(out)


@pytest.mark.parametrize("kind, data, sts, first, match", [
    (EMBEDDER, False, False, False, "give a BEIR directory"),
    (RERANKER, True, False, False, r"\[reranker.first_stage\]"),
    (RERANKER, True, True, True, "not on STS"),
    (COLBERT, False, True, False, r"\[eval.sts\]"),
])
def test_impossible_evaluations_are_refused(kind, data, sts, first, match):
    with pytest.raises(InputError, match=match):
        check_evaluable(kind, data, sts, first)


def test_metric_names_and_the_run_evaluator(models, tmp_path):
    assert metric_names(EMBEDDER, True, True, (12, 4)) == [
        "ndcg@10", "recall@100", "mrr@10", "sts_spearman", "dim4/ndcg@10", "dim4/recall@100", "dim4/mrr@10",
        "dim4/sts_spearman"]
    assert metric_names(COLBERT, True, False) == ["ndcg@10", "recall@100", "mrr@10"]
    cfg = load_config(None, [f"output_dir={tmp_path}", f"model.path={models['st']}", "data.train=x.jsonl",
                             f"eval.data={models['beir']}", "eval.metric=mrr@10"])
    evaluator = RunEvaluator(cfg)
    evaluator.check(models["dense"])
    assert evaluator.metric == "mrr@10" and evaluator(models["dense"])["mrr@10"] >= 0
    bad = RunEvaluator(load_config(None, [f"output_dir={tmp_path}", f"model.path={models['st']}",
                                          "data.train=x.jsonl", f"eval.data={models['beir']}",
                                          "eval.metric=dim4/ndcg@10"]))
    with pytest.raises(InputError, match=r"\[eval.metric\]"):
        bad.check(models["dense"])


def test_several_datasets_give_each_ones_metrics_and_their_mean(models, tmp_path):
    import shutil

    other = tmp_path / "fox2"
    shutil.copytree(models["beir"], other)
    (other / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    sts = tmp_path / "sts-test.csv"
    sts.write_text("g\tf\t1\t1\t5.0\tquick fox\tquick brown fox\ng\tf\t1\t2\t0.5\thello world\tlazy dog\n"
                   "g\tf\t1\t3\t3.0\tfox\tdog fox\n")
    cfg = load_config(None, [f"output_dir={tmp_path}", f"model.path={models['st']}", "data.train=x.jsonl",
                             f"eval.data=[{models['beir']}, {other}]", f"eval.sts={sts}"])
    evaluator = RunEvaluator(cfg)
    evaluator.check(models["dense"])
    out = evaluator(models["dense"])
    one = evaluate_dense(models["dense"], models["data"], 64)
    two = evaluate_dense(models["dense"], load_beir(other), 64)
    assert out["beir/ndcg@10"] == one["ndcg@10"] and out["fox2/ndcg@10"] == two["ndcg@10"]
    assert out["ndcg@10"] == pytest.approx((one["ndcg@10"] + two["ndcg@10"]) / 2)
    assert out["sts-test/sts_spearman"] == out["sts_spearman"]
    assert "fox2/mrr@10" in metric_names(EMBEDDER, True, True, (), tuple(evaluator.names))
    RunEvaluator(load_config(None, [f"output_dir={tmp_path}", f"model.path={models['st']}", "data.train=x.jsonl",
                                    f"eval.data=[{models['beir']}, {other}]", "eval.metric=fox2/ndcg@10"])
                 ).check(models["dense"])
