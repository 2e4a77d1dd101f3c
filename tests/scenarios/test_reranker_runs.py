"""Rerankers: data formats, training with each loss, export that transformers and sentence-transformers'
CrossEncoder load with our scores, the Qwen2 LLM reranker, teacher scoring, and two-stage evaluation."""

import json

import numpy as np
import pytest
import torch

from hf_tiny import tiny_embedder_dir, tiny_family, tiny_pairs_jsonl
from jaxretrieval.cli import main
from jaxretrieval.config import load_config
from jaxretrieval.convert.export import export
from jaxretrieval.door import open_model
from jaxretrieval.errors import InputError
from jaxretrieval.eval.rerank import score_pairs
from jaxretrieval.training import run_training as train

QUERIES = ["the fox", "hello world", "lazy dog jumps"]
DOCS = ["the quick brown fox jumps over the lazy dog", "hello", "world . world , hello " * 30]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("rerank")
    return root, tiny_embedder_dir(root / "bert"), tiny_pairs_jsonl(root / "pairs.jsonl", rows=12, negatives=3)


def _cfg(out, model, data, *extra):
    return load_config(None, [f"output_dir={out}", "task=reranker", f"model.path={model}", f"data.train={data}",
                              "batch_size=4", "steps=3", "learning_rate=1e-3", "log_every=1", "save_every=3",
                              "reranker.group_size=3", "reranker.max_length=48", "mesh.data=1", *extra])


def _losses(out):
    return [json.loads(x)["loss"] for x in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]


@pytest.mark.parametrize("loss", ["listwise", "distill", "ranknet", "bce", "mse"])
def test_losses_train_and_bert_export_matches_cross_encoder(setup, tmp_path, loss):
    root, bert, pairs = setup
    data = pairs
    if loss != "listwise":  # teacher scores / labels from a dense model through `jaxretrieval score`
        data = tmp_path / "scored.jsonl"
        assert main(["score", "--model", str(bert), "--input", str(pairs), "--out", str(data)]) == 0
        if loss in ("bce", "mse"):  # soft labels in [0, 1]
            records = [json.loads(x) for x in data.read_text().splitlines()]
            for r in records:
                r["pos_scores"] = [1.0] * len(r["pos"])
                r["neg_scores"] = [0.2 * (i % 3) for i in range(len(r["neg"]))]
            data.write_text("".join(json.dumps(r) + "\n" for r in records))
    run = tmp_path / "run"
    train(_cfg(run, bert, data, f"reranker.loss={loss}"))
    assert np.isfinite(_losses(run)).all()
    if loss != "listwise":
        return
    from sentence_transformers import CrossEncoder
    from transformers import AutoModelForSequenceClassification

    out = export(open_model(run), tmp_path / "ce", fmt="cross-encoder")
    ours = score_pairs(open_model(run), QUERIES, DOCS)
    hf = AutoModelForSequenceClassification.from_pretrained(str(out)).eval()
    ce = CrossEncoder(str(out), device="cpu", activation_fn=torch.nn.Identity())
    theirs = ce.predict(list(zip(QUERIES, DOCS)), convert_to_numpy=True)
    assert hf.config.num_labels == 1
    assert np.abs(ours - theirs).max() <= 1e-4, (ours, theirs)


def test_llm_reranker_trains_exports_and_matches_transformers(tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    qwen = tiny_family(tmp_path / "qwen", "qwen2", seed=4)
    data = tiny_pairs_jsonl(tmp_path / "d.jsonl", rows=4, negatives=2)
    run = tmp_path / "run"
    train(_cfg(run, qwen, data, "steps=12", "learning_rate=3e-3", "reranker.special_token= yes",
               "reranker.query_format=query: {} ", "reranker.doc_format=document: {}"))
    losses = _losses(run)
    assert losses[-1] < losses[0] * 0.7, losses  # one fixed batch (4 queries, all their candidates)
    out = export(open_model(run), tmp_path / "llm", fmt="cross-encoder")
    loaded = open_model(run)
    ours = score_pairs(loaded, QUERIES, DOCS)
    hf = AutoModelForSequenceClassification.from_pretrained(str(out)).eval()
    tok = AutoTokenizer.from_pretrained(str(out))
    texts = [f"query: {q} document: {d} yes" for q, d in zip(QUERIES, DOCS)]
    enc = tok(texts, truncation=True, max_length=48, padding=True, return_tensors="pt")
    with torch.no_grad():
        theirs = hf(**enc).logits[:, 0].numpy()
    assert np.abs(ours - theirs).max() <= 1e-4, (ours, theirs)


def test_two_stage_eval_and_bad_requests(setup, tmp_path):
    root, bert, pairs = setup
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    docs = [f"{w} fox dog" for w in ["quick", "brown", "lazy", "hello", "world", "over"]]
    (beir / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "text": t}) + "\n"
                                               for i, t in enumerate(docs)))
    (beir / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": t}) + "\n"
                                                for i, t in enumerate(["quick", "lazy dog"])))
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq0\td0\t1\nq1\td2\t1\n")
    run = tmp_path / "run"
    train(_cfg(run, bert, pairs, "steps=2", f"eval.data={beir}", f"reranker.first_stage={bert}",
               "reranker.rerank_top=4"))
    record = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if "eval/ndcg@10" in x][-1]
    assert "eval/first_stage/ndcg@10" in record and record["eval/rerank_top"] == 4
    with pytest.raises(InputError, match=r"\[reranker.first_stage\]"):
        train(_cfg(tmp_path / "x", bert, pairs, f"eval.data={beir}"))
    with pytest.raises(InputError, match=r"\[format\]"):
        export(open_model(run), tmp_path / "y", fmt="sentence-transformers")


def test_reranker_scores_distill_into_a_dense_model(setup, tmp_path):
    """`jaxretrieval score` with a reranker, then the dense task's per-query KL (loss.name=kl)."""
    root, bert, pairs = setup
    run = tmp_path / "ce"
    train(_cfg(run, bert, pairs, "steps=1"))
    scored = tmp_path / "scored.jsonl"
    assert main(["score", "--model", str(run), "--input", str(pairs), "--out", str(scored)]) == 0
    record = json.loads(scored.read_text().splitlines()[0])
    assert len(record["pos_scores"]) == len(record["pos"]) and len(record["neg_scores"]) == len(record["neg"])
    dense = tmp_path / "dense"
    train(load_config(None, [f"output_dir={dense}", f"model.path={bert}", f"data.train={scored}", "batch_size=4",
                             "steps=3", "loss.name=kl", "loss.temperature=0.05", "data.num_negatives=2",
                             "log_every=1", "learning_rate=1e-3", "mesh.data=1"]))
    assert np.isfinite(_losses(dense)).all()
    with pytest.raises(InputError, match="pos_scores"):
        train(load_config(None, [f"output_dir={tmp_path / 'x'}", f"model.path={bert}", f"data.train={pairs}",
                                 "batch_size=4", "steps=1", "loss.name=kl", "data.num_negatives=2", "mesh.data=1"]))


def test_llm_reranker_with_lora_trains_adapters_only_and_exports_merged(tmp_path):
    """LoRA on every Qwen2 projection: the base kernels stay as loaded, only adapters and the score head train and
    hold optimizer state, the loss falls, and the merged export scores as ours in transformers."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from jaxretrieval.convert.cross_encoder_format import load_reranker
    from jaxretrieval.models.lora import has_lora
    from jaxretrieval.models.params import flat_params
    from jaxretrieval.train.checkpoint import restore_params

    qwen = tiny_family(tmp_path / "qwen", "qwen2", seed=4)
    data = tiny_pairs_jsonl(tmp_path / "d.jsonl", rows=4, negatives=2)
    run = tmp_path / "run"
    fmt = ["reranker.special_token= yes", "reranker.query_format=query: {} ", "reranker.doc_format=document: {}"]
    train(_cfg(run, qwen, data, "steps=12", "learning_rate=1e-2", "model.lora_rank=4", "model.lora_alpha=8",
               "optimizer.trainable=lora,head", *fmt))
    losses = _losses(run)
    assert losses[-1] < losses[0] * 0.8, losses
    saved, _ = restore_params(run, 12)
    base = {f"encoder.{k}": v for k, v in flat_params(load_reranker(qwen).model.encoder).items()}
    adapters = [k for k in saved if k.endswith(("lora_a", "lora_b"))]
    assert len(adapters) == 2 * 7 * 2  # 2 layers x 7 projections x (A, B)
    for name, value in base.items():  # frozen: exactly the loaded weights
        np.testing.assert_array_equal(saved[name], value, err_msg=name)
    assert np.abs(saved["encoder.layers.0.q_proj.lora_b"]).max() > 0  # B left zero would mean no adaptation
    loaded = open_model(run)
    assert has_lora(loaded.model)
    ours = score_pairs(loaded, QUERIES, DOCS)
    out = export(open_model(run), tmp_path / "llm", fmt="cross-encoder")
    hf = AutoModelForSequenceClassification.from_pretrained(str(out)).eval()
    tok = AutoTokenizer.from_pretrained(str(out))
    enc = tok([f"query: {q} document: {d} yes" for q, d in zip(QUERIES, DOCS)], truncation=True, max_length=48,
              padding=True, return_tensors="pt")
    with torch.no_grad():
        theirs = hf(**enc).logits[:, 0].numpy()
    assert np.abs(ours - theirs).max() <= 1e-4, (ours, theirs)


def test_lora_starts_as_the_base_model_and_rejects_unknown_targets(tmp_path):
    from jaxretrieval.train.model_setup import build_model

    qwen = tiny_family(tmp_path / "qwen", "qwen2", seed=4)
    base = score_pairs(build_model(_cfg(tmp_path / "a", qwen, "unused.jsonl")), QUERIES, DOCS)
    adapted = build_model(_cfg(tmp_path / "b", qwen, "unused.jsonl", "model.lora_rank=2"))
    np.testing.assert_array_equal(score_pairs(adapted, QUERIES, DOCS), base)
    with pytest.raises(InputError, match=r"model\.lora_targets.*no linear layer"):
        build_model(_cfg(tmp_path / "c", qwen, "unused.jsonl", "model.lora_rank=2", "model.lora_targets=[qkv]"))


def test_in_batch_negatives_come_from_other_queries_and_never_a_positive(setup, tmp_path):
    from jaxretrieval.train.model_setup import build_model
    from jaxretrieval.train.reranker_task import RerankerTask

    root, bert, pairs = setup
    # two queries share a positive: it must never be drawn as the other's in-batch negative
    shared = tmp_path / "shared.jsonl"
    records = [json.loads(x) for x in pairs.read_text().splitlines()]
    records[1]["pos"] = records[0]["pos"][:1]
    shared.write_text("".join(json.dumps(r) + "\n" for r in records))
    cfg = _cfg(tmp_path / "run", bert, shared, "reranker.in_batch_negatives=3")
    task = RerankerTask.build(cfg, build_model(cfg))
    src = task.source
    for step in range(src.steps_per_epoch * 2):
        epoch, index = divmod(step, src.steps_per_epoch)
        batch = src.batch(step)
        plan = src.plans(epoch)
        rows = slice(index * src.global_batch, (index + 1) * src.global_batch)
        q, p, n = plan[0][rows], plan[1][rows], plan[2][rows]
        docs = np.concatenate([p[:, None], n], axis=1)
        extra = src.draw_in_batch_negatives(q, docs, epoch, index)
        assert batch["ids"].shape[:2] == (4, 3 + 3)
        for i in range(len(q)):
            others = set(np.concatenate([docs[:i], docs[i + 1:]]).reshape(-1).tolist())
            assert set(extra[i].tolist()) <= others - src.positives_by_query[int(q[i])]
    train(cfg)
    assert np.isfinite(_losses(tmp_path / "run")).all()
    with pytest.raises(InputError, match=r"\[reranker\.in_batch_negatives\]"):
        RerankerTask.build(_cfg(tmp_path / "x", bert, shared, "reranker.in_batch_negatives=2", "reranker.loss=distill"),
                           build_model(cfg))


def test_distillation_skips_records_without_negatives(setup, tmp_path, caplog):
    """Mining can leave a query with no negatives; KL distillation skips it (with a warning naming the first) and
    refuses a file where no record has any."""
    root, bert, pairs = setup
    scored = tmp_path / "scored.jsonl"
    assert main(["score", "--model", str(bert), "--input", str(pairs), "--out", str(scored)]) == 0
    records = [json.loads(x) for x in scored.read_text().splitlines()]
    records[2]["neg"], records[2]["neg_scores"] = [], []
    scored.write_text("".join(json.dumps(r) + "\n" for r in records))
    args = [f"model.path={bert}", f"data.train={scored}", "batch_size=4", "steps=2", "loss.name=kl",
            "data.num_negatives=2", "log_every=1", "mesh.data=1"]
    with caplog.at_level("WARNING"):
        train(load_config(None, [f"output_dir={tmp_path / 'ok'}", *args]))
    assert "1 of 12 records have no negatives and are skipped for distillation (first: record 3)" in caplog.text
    for r in records:
        r["neg"], r["neg_scores"] = [], []
    scored.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(InputError, match=r"scored\.jsonl \[neg\]: no record has negatives"):
        train(load_config(None, [f"output_dir={tmp_path / 'bad'}", *args]))
