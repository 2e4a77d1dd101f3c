"""Training from prepared shards, for every task: `prepare` with the CLI, train, stop as a preemption would
mid-epoch, resume exactly; bad prepared input is one line."""

import dataclasses
import json

import numpy as np
import pytest
import yaml
from hf_tiny import tiny_colbert_dir, tiny_distill_data, tiny_embedder_dir, tiny_pairs_jsonl, tiny_prepared_shards
from resumed_runs import straight_and_resumed

from jaxretrieval.cli import main
from jaxretrieval.config import config_to_dict, load_config


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return tiny_prepared_shards(tmp_path_factory.mktemp("prepared"))


def test_dense_from_shards_resumes_exactly(prepared, tmp_path):
    model, _, out = prepared
    cfg = load_config(None, [f"output_dir={tmp_path}", f"model.path={model}", f"data.train={out}", "batch_size=8",
                             "data.num_negatives=1", "model.max_query_length=16", "model.max_doc_length=24",
                             "steps=6", "save_every=2", "log_every=1", "learning_rate=1e-3"])
    straight, resumed = straight_and_resumed(cfg, tmp_path, stop_at=3)  # 4 steps an epoch: stopped mid-epoch
    assert [m["step"] for m in straight] == [1, 2, 3, 4, 5, 6]
    assert [m for m in straight if m["step"] > 3] == [m for m in resumed if m["step"] > 3]
    assert np.isfinite([m["loss"] for m in straight]).all()


def _task_config(root, task):
    """(config for `prepare --config`, training overrides) of a tiny run of `task`."""
    common = ["batch_size=8", "steps=4", "save_every=2", "log_every=1", "learning_rate=1e-3"]
    if task == "colbert":
        model = tiny_colbert_dir(root / "model")
        data = tiny_pairs_jsonl(root / "pairs.jsonl", rows=26, negatives=3)
        extra = ["task=colbert", "data.num_negatives=2", "colbert.dim=16", "colbert.query_length=8",
                 "colbert.doc_length=24"]
    elif task == "reranker":
        model = tiny_embedder_dir(root / "model")
        pairs = tiny_pairs_jsonl(root / "pairs.jsonl", rows=26, negatives=3)
        data = root / "scored.jsonl"
        assert main(["score", "--model", str(model), "--input", str(pairs), "--out", str(data)]) == 0
        extra = ["task=reranker", "reranker.loss=ranknet", "reranker.group_size=3", "reranker.in_batch_negatives=1",
                 "reranker.max_length=48"]
    else:
        model, _, data, vectors = tiny_distill_data(root)
        extra = ["task=distill", f"distill.teacher_vectors=[{vectors}]", "distill.max_length=24", "model.head_dim=24"]
    cfg = load_config(None, [f"output_dir={root}/unused", f"model.path={model}", f"data.train={data}", *common,
                             *extra])
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config_to_dict(cfg)))
    return path, cfg


@pytest.mark.parametrize("task", ["colbert", "reranker", "distill"])
def test_every_task_trains_from_shards_and_resumes_exactly(tmp_path, task):
    config, cfg = _task_config(tmp_path, task)
    shards = tmp_path / "shards"
    assert main(["prepare", "--config", str(config), "--out", str(shards), "--shards", "2"]) == 0
    manifest = json.loads((shards / "dataset.json").read_text())
    assert manifest["content"] == {"colbert": "pair_tokens", "reranker": "pair_texts", "distill": "text_tokens"}[task]
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, train=str(shards)))
    straight, resumed = straight_and_resumed(cfg, tmp_path)
    assert [m["step"] for m in straight] == [1, 2, 3, 4]
    assert [m for m in straight if m["step"] > 2] == [m for m in resumed if m["step"] > 2]
    assert np.isfinite([m["loss"] for m in straight]).all()


def test_bad_prepared_input_is_one_line(prepared, tmp_path, capsys):
    model, data, out = prepared
    base = [f"output_dir={tmp_path / 'run'}", f"model.path={model}", f"data.train={out}", "batch_size=8", "steps=1",
            "model.max_query_length=16", "model.max_doc_length=24"]
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(config_to_dict(load_config(None, base))))
    cases = [
        (["train", str(config), "model.max_doc_length=32"], "[max_doc_length]: prepared with max_doc_length 24"),
        (["train", str(config), "task=reranker"], "[content]: prepared for another task"),
        (["train", str(config), "loss.name=kl", "data.num_negatives=1"], "[pos_scores]: loss.name kl needs"),
        (["prepare", "--config", str(config), "--out", str(tmp_path / "again")], "[data.train]: data.train is "
                                                                                "prepared already"),
        (["prepare", "--model", str(model), "--data", str(data), "--out", str(out)], "not empty"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert message in err[-1], (argv, err[-1])
    assert not (tmp_path / "run").exists() and not (tmp_path / "again").exists()
