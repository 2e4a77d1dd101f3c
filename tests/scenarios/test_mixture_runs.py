"""Training on a mixture of sources: jsonl, an STS file and prepared shards mixed in one run, one source per batch
or mixed batches, stopped mid-mixture and resumed exactly, with per-source logs; bad mixtures are one line."""

import json
import random

import numpy as np
import pytest
import yaml
from hf_tiny import WORDS, tiny_pairs_jsonl, tiny_prepared_shards
from resumed_runs import run_metrics, straight_and_resumed

from jaxretrieval.cli import main
from jaxretrieval.config import load_config
from jaxretrieval.training import run_training as train


def tiny_sts(path, rows=30, seed=1):
    """An STS-B style file over the tiny vocabulary: half its pairs score 4 or more."""
    rng = random.Random(seed)
    words = lambda n: " ".join(rng.choice(WORDS) for _ in range(n))  # noqa: E731
    lines = [f"g\tf\t2012\t{i:04d}\t{(i % 2) * 4 + rng.random():.3f}\t{words(4)}\t{words(5)}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixture")
    model, _, shards = tiny_prepared_shards(root)
    pairs = tiny_pairs_jsonl(root / "pairs.jsonl", rows=30, negatives=3, seed=4)
    return model, pairs, tiny_sts(root / "sts-train.csv"), shards


def _config(tmp_path, model, sources, *extra):
    path = tmp_path / "mixture.yaml"
    path.write_text(yaml.safe_dump({
        "output_dir": str(tmp_path / "run"), "model": {"path": str(model), "max_query_length": 16,
                                                       "max_doc_length": 24},
        "data": {"train": sources, "num_negatives": 1}, "batch_size": 8, "learning_rate": 1e-3, "steps": 9,
        "save_every": 2, "log_every": 1}))
    return load_config(path, list(extra))


def test_one_source_batches_mix_formats_and_resume_exactly(data, tmp_path):
    model, pairs, sts, shards = data
    cfg = _config(tmp_path, model, [{"path": str(pairs), "name": "pairs"},
                                    {"path": str(sts), "min_score": 4, "prompt": "q: ", "batch_size": 8},
                                    {"path": str(shards), "name": "shards"}], "batch_size=16")
    straight, resumed = straight_and_resumed(cfg, tmp_path, stop_at=5)
    assert [m["step"] for m in straight] == list(range(1, 10))
    assert [m for m in straight if m["step"] > 5] == [m for m in resumed if m["step"] > 5]  # bitwise: json floats
    last = straight[-1]
    counts = {name: last[f"source/{name}/examples"] for name in ("pairs", "sts-train", "shards")}
    # every step is one source's whole batch: 16 rows, or the STS source's own 8
    assert counts["pairs"] / 16 + counts["sts-train"] / 8 + counts["shards"] / 16 == 9 and all(counts.values())
    per_step_losses = [m["loss"] for m in straight]
    for m in straight:  # each step's loss is logged under the one source its batch came from
        losses = {k: v for k, v in m.items() if k.endswith("/loss") and k.startswith("source/")}
        assert list(losses.values()) == [m["loss"]]
    assert np.isfinite(per_step_losses).all()
    assert json.loads((tmp_path / "straight" / "run_status.json").read_text())["status"] == "finished"


def test_mixed_batches_hold_every_source_and_resume_exactly(data, tmp_path):
    model, pairs, sts, shards = data
    cfg = _config(tmp_path, model, [{"path": str(pairs), "weight": 3}, {"path": str(sts), "min_score": 4},
                                    {"path": str(shards), "weight": 4}],
                  "data.batch_from_one_source=false", "data.sampling=weights")
    straight, resumed = straight_and_resumed(cfg, tmp_path, stop_at=4)
    assert [m for m in straight if m["step"] > 4] == [m for m in resumed if m["step"] > 4]
    last = straight[-1]
    assert [last[f"source/{n}/examples"] for n in ("pairs", "sts-train", "shards")] == [9 * 3, 9 * 1, 9 * 4]
    assert not any(k.endswith("/loss") and k.startswith("source/") for k in last)


@pytest.mark.parametrize("sources, extra, field", [
    ([{"path": "a.jsonl", "weight": 2}], [], "data.train[0].weight"),  # weights ignored by size sampling
    ([{"path": "a.jsonl"}, {"path": "b/a.jsonl"}], [], "data.train[1].name"),
    ([{"path": "a.jsonl", "query_prompt": "q"}], ["task=colbert"], "data.train[0].query_prompt"),
    ([{"path": "a.jsonl"}], ["data.temperature=2"], "data.temperature"),
    ([{"path": "a.jsonl", "bogus": 1}], [], "data.train[0].bogus"),
])
def test_bad_mixture_settings_are_one_line(tmp_path, capsys, sources, extra, field):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "run"), "model": {"path": "m"},
                                   "data": {"train": sources}}))
    assert main(["train", str(cfg), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and field in err[0], err
    assert not (tmp_path / "run").exists()


def test_a_source_too_small_for_its_rows_names_it(data, tmp_path, capsys):
    model, pairs, sts, shards = data
    cfg = _config(tmp_path, model, [{"path": str(pairs), "weight": 1}, {"path": str(sts), "min_score": 4,
                                                                         "weight": 0.01}],
                  "data.batch_from_one_source=false", "data.sampling=weights")
    with pytest.raises(Exception, match="sts-train"):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_a_reranker_mixes_sources_within_each_batch_by_default(data, tmp_path):
    model, pairs, _, _ = data
    other = tiny_pairs_jsonl(tmp_path / "other.jsonl", rows=20, negatives=3, seed=9)
    cfg = _config(tmp_path, model, [str(pairs), {"path": str(other), "weight": 1}], "task=reranker",
                  "reranker.group_size=3", "reranker.max_length=48", "steps=3", "data.sampling=round_robin")
    assert not cfg.one_source_batches
    train(cfg)
    last = run_metrics(tmp_path / "run")[-1]
    assert last["step"] == 3 and np.isfinite(last["loss"])
    assert last["source/pairs/examples"] == last["source/other/examples"] == 3 * 4  # round robin: 4 + 4 of 8 rows


def test_a_mixture_is_prepared_one_source_at_a_time(data, tmp_path, capsys):
    model, pairs, sts, _ = data
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "run"), "model": {"path": str(model)},
                                   "data": {"train": [str(pairs), {"path": str(sts), "min_score": 4}]}}))
    assert main(["prepare", "--config", str(cfg), "--out", str(tmp_path / "shards")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "prepare one at a time" in err[0]
    assert not (tmp_path / "shards").exists()
