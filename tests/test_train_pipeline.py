"""Training data: readers, validation errors, per-epoch sampling, and process sharding of batches."""

import json

import numpy as np
import pytest

from hf_tiny import tiny_pairs_jsonl
from jaxretrieval.data.train_pairs import epoch_plan, read_pairs_beir, read_pairs_jsonl
from jaxretrieval.errors import InputError


def test_jsonl_reader_dedups_texts_and_applies_prompt(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"query": "q1", "pos": ["a"], "neg": ["b", "c"], "prompt": "Q: "}) + "\n" +
                 json.dumps({"query": "q2", "pos": "b"}) + "\n")
    pairs = read_pairs_jsonl(f)
    assert pairs.query_texts == ["Q: q1", "q2"]
    assert pairs.doc_texts == ["a", "b", "c"]
    assert pairs.positives[1].tolist() == [1] and pairs.negatives[0].tolist() == [1, 2]


@pytest.mark.parametrize("line,expect", [
    ('{"query": "q", "pos": ["a"]', ":2: not valid JSON"),
    ('{"query": "q", "pos": []}', ":2 [pos]: field 'pos' is empty"),
    ('{"pos": ["a"]}', ":2 [query]: missing field 'query'"),
    ('{"query": "q", "pos": ["a"], "neg": [1]}', ":2 [neg]: field 'neg' must be a list of strings"),
])
def test_jsonl_errors_name_file_and_line(tmp_path, line, expect):
    f = tmp_path / "d.jsonl"
    f.write_text('{"query": "ok", "pos": ["a"]}\n' + line + "\n")
    with pytest.raises(InputError) as e:
        read_pairs_jsonl(f)
    assert str(f) + expect in str(e.value)


def test_beir_pairs_one_per_relevant_row(scifact_dir):
    pairs = read_pairs_beir(scifact_dir, "train")
    assert len(pairs) == 919  # every qrels row of SciFact train has score 1
    assert len(pairs.query_texts) == len(set(pairs.query_texts)) == 807  # 809 ids, two texts repeat


def test_epoch_plan_is_deterministic_and_resamples(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text("".join(json.dumps({"query": f"q{i}", "pos": [f"p{i}"], "neg": [f"n{i}-{j}" for j in range(3)]})
                         + "\n" for i in range(20)))
    pairs = read_pairs_jsonl(f)
    a = epoch_plan(pairs, seed=1, epoch=0, num_negatives=2)
    b = epoch_plan(pairs, seed=1, epoch=0, num_negatives=2)
    c = epoch_plan(pairs, seed=1, epoch=1, num_negatives=2)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    # negatives: from the example's own hard negatives, without replacement when it has enough
    q, _, neg = epoch_plan(pairs, seed=2, epoch=0, num_negatives=3)
    for row, qid in enumerate(q):
        i = int(np.nonzero(pairs.query == qid)[0][0])
        assert set(neg[row]) <= set(pairs.negatives[i]) and len(set(neg[row])) == len(set(pairs.negatives[i]))
    # more negatives than an example has: with replacement
    _, _, neg = epoch_plan(pairs, seed=2, epoch=0, num_negatives=5)
    assert neg.shape == (20, 5)


def test_random_negatives_avoid_positives_when_none_given(scifact_dir):
    pairs = read_pairs_beir(scifact_dir, "train")
    _, pos, neg = epoch_plan(pairs, seed=0, epoch=0, num_negatives=4)
    assert neg.shape == (919, 4) and not (neg == pos[:, None]).any()


def test_process_shards_concatenate_to_the_global_batch(tmp_path, minilm_dir):
    from jaxretrieval.convert.st_format import load_embedder
    from jaxretrieval.data.pipeline import DenseBatchSource, TokenTable

    pairs = read_pairs_jsonl(tiny_pairs_jsonl(tmp_path / "d.jsonl", rows=16))
    tok = load_embedder(minilm_dir).tokenizer
    q = TokenTable.build(tok, pairs.query_texts, "query", 16, 1)
    d = TokenTable.build(tok, pairs.doc_texts, "doc", 32, 1)
    make = lambda i, n: DenseBatchSource(pairs, q, d, 8, 2, 0, tok.pad_id, i, n)
    whole = make(0, 1).batch(3)
    halves = [make(i, 2).batch(3) for i in range(2)]
    for key in whole:
        np.testing.assert_array_equal(whole[key], np.concatenate([h[key] for h in halves]))
    assert whole["pos_ids"].shape[1] in (16, 32) and whole["neg_ids"].shape[:2] == (8, 2)


def test_length_grouped_order_is_a_permutation_with_homogeneous_batches():
    from jaxretrieval.data.pipeline import length_grouped_order

    rng = np.random.default_rng(0)
    lengths = np.where(rng.random(1000) < 0.2, 200, 10) + rng.integers(0, 5, 1000)
    order = length_grouped_order(lengths, 8, np.random.default_rng(1), window=16)
    assert sorted(order.tolist()) == list(range(1000))
    batches = lengths[order[:992]].reshape(-1, 8)
    mixed = ((batches.max(1) >= 200) & (batches.min(1) < 200)).mean()
    assert mixed <= 8 / 124  # at most one mixed batch per window; random batches of 8: ~83% mixed


def test_epoch_cache_makes_each_plan_once_and_serves_both_sides_of_a_boundary():
    """tf.data builds steps of epochs e and e + 1 at the same time: interleaved reads must each get their own
    epoch's plan, and no plan may be rebuilt while both are in use."""
    import threading

    from jaxretrieval.data.pipeline import EpochCache

    made = []
    cache = EpochCache(lambda epoch: made.append(epoch) or f"plan{epoch}")
    assert [cache(e) for e in (0, 1, 0, 1, 2, 1)] == ["plan0", "plan1", "plan0", "plan1", "plan2", "plan1"]
    assert made == [0, 1, 2]
    got = {}
    threads = [threading.Thread(target=lambda e=e: got.setdefault(e, cache(e))) for e in (3, 4, 3, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == {3: "plan3", 4: "plan4"} and sorted(made) == [0, 1, 2, 3, 4]
