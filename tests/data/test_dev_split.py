"""The dev split: chosen by a hash of each query id (the same in every process, run and host count), held out of
every training source (prompted or not), and loaded as its own BEIR split for evaluation."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from hf_tiny import tiny_colbert_dir, tiny_embedder_dir, tiny_train_beir
from jaxretrieval.config import load_config
from jaxretrieval.data.beir import load_beir
from jaxretrieval.data.dev_split import HeldOut, dev_ids_of, dev_query_ids, held_out, load_dev, query_hash
from jaxretrieval.data.train_pairs import read_train_pairs
from jaxretrieval.errors import InputError

IDS = [f"q{i}" for i in range(400)]


def test_a_fraction_and_a_count_choose_by_hash():
    frac = dev_query_ids(IDS, 0.25)
    assert 60 < len(frac) < 140  # about a quarter, by hash
    assert frac == {q for q in IDS if query_hash(q) < 0.25}
    count = dev_query_ids(IDS, 30)
    assert len(count) == 30 and max(map(query_hash, count)) < min(query_hash(q) for q in set(IDS) - count)
    # order and repetition of the ids do not matter; a dataset that grows keeps its old dev queries
    assert dev_query_ids(list(reversed(IDS)) + IDS[:5], 0.25) == frac
    assert dev_query_ids(IDS + [f"new{i}" for i in range(100)], 0.25) & set(IDS) == frac


def test_the_hash_is_the_same_in_another_process():
    """Python's own str hash changes with PYTHONHASHSEED; the dev split must not."""
    code = ("from jaxretrieval.data.dev_split import dev_query_ids as d; "
            "print(sorted(d([f'q{i}' for i in range(400)], 0.1)))")
    outs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")]
    assert outs[0] == outs[1] == f"{sorted(dev_query_ids(IDS, 0.1))}\n"


@pytest.mark.parametrize("size, why", [(0.0001, "holds out 0"), (400, "holds out 400 of 400"), (2.5, "not whole")])
def test_an_empty_or_total_dev_split_is_refused(size, why):
    with pytest.raises(InputError, match=why):
        dev_query_ids(IDS, size)


def test_held_out_queries_match_with_a_prompt_before_them():
    h = HeldOut(frozenset({"lazy dog", "fox"}))
    assert "lazy dog" in h and "query: lazy dog" in h and "fox" in h
    assert "lazy dogs" not in h and "dog" not in h and "fox jumps" not in h
    assert h.keep_rows(["fox", "a fox jumps", "Represent this: lazy dog", "brown"]) == [1, 3]
    assert not HeldOut()


def _cfg(tmp_path, beir, *extra):
    model = (tiny_colbert_dir if "task=colbert" in extra else tiny_embedder_dir)(tmp_path / "m")
    return load_config(None, [f"output_dir={tmp_path / 'run'}", f"model.path={model}",
                              f"data.train={beir}", "batch_size=4", "data.dev_queries=8", *extra])


def test_dev_queries_leave_training_and_form_their_own_split(tmp_path):
    beir = tiny_train_beir(tmp_path / "beir")
    cfg = _cfg(tmp_path, beir)
    chosen, queries = dev_ids_of(str(beir), "train", 8)
    assert len(chosen) == 8
    h = held_out(cfg)
    assert h.texts == {queries[q] for q in chosen}
    pairs = read_train_pairs(beir, "train")
    kept = h.drop_from_pairs(pairs)
    trained = {pairs.query_texts[int(q)] for q in kept.query}
    assert len(kept) == 24 and not trained & h.texts and trained | h.texts == set(pairs.query_texts)
    dev = load_dev(str(beir), "train", 8)
    assert set(dev.query_ids) == chosen and set(dev.qrels) == chosen
    assert dev.doc_ids == load_beir(beir, "train").doc_ids  # searched over the whole corpus
    # a prompt on the training queries does not let a dev query through
    prompted = h.drop_from_pairs(read_train_pairs(beir, "train", prompt="query: "))
    assert len(prompted) == 24


def test_a_jsonl_source_repeating_a_dev_query_drops_it(tmp_path):
    beir = tiny_train_beir(tmp_path / "beir")
    chosen, queries = dev_ids_of(str(beir), "train", 8)
    dev_text = queries[sorted(chosen)[0]]
    rows = [{"query": dev_text, "pos": ["fox"]}] + [{"query": f"other {i}", "pos": ["dog"]} for i in range(7)]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = _cfg(tmp_path, path, f"eval.dev_data={beir}")
    kept = held_out(cfg).drop_from_pairs(read_train_pairs(path))
    assert len(kept) == 7 and dev_text not in kept.query_texts[int(kept.query[0])]


def test_a_source_without_beir_queries_needs_dev_data(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"query": "a", "pos": ["b"]}) + "\n")
    with pytest.raises(InputError, match=r"\[data.dev_queries\].*name one in eval.dev_data"):
        held_out(_cfg(tmp_path, path))


@pytest.mark.parametrize("task", ["dense", "colbert"])
def test_training_batches_hold_the_same_queries_on_one_or_two_processes(tmp_path, task):
    """Each process reads every example, drops the dev queries, then keeps its rows: the queries an epoch trains
    on are the same for any process count, and none of them is a dev query."""
    from jaxretrieval.train.model_setup import build_model
    from jaxretrieval.train.tasks import build_task

    beir = tiny_train_beir(tmp_path / "beir")
    cfg = _cfg(tmp_path, beir, f"task={task}")
    built = build_task(cfg, build_model(cfg))
    source = built.source
    texts = source.pairs.query_texts
    seen = {}
    for processes in (1, 2):
        shares = [dataclasses.replace(source, process_index=i, process_count=processes) for i in range(processes)]
        seen[processes] = {texts[int(t)] for s in shares for step in range(source.steps_per_epoch)
                           for t in np.asarray(s.batch(step)["query_text"]).ravel()}
    assert seen[1] == seen[2] and len(seen[1]) == 24 and not seen[1] & held_out(cfg).texts
