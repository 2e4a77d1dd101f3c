"""The input pipeline: processes' rows concatenate to the global batch, length-grouped orders are permutations of
homogeneous batches, per-epoch plans are made once for every worker thread, and tf.data yields the steps asked for."""

import threading

import numpy as np

from hf_tiny import tiny_pairs_jsonl
from jaxretrieval.convert.st_format import load_embedder
from jaxretrieval.data.pipeline import DenseBatchSource, EpochCache, TokenTable, iterate, length_grouped_order
from jaxretrieval.data.train_pairs import read_pairs_jsonl


def test_process_shards_concatenate_to_the_global_batch(tmp_path, minilm_dir):
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


def test_iterate_yields_the_sources_batches_in_order(tmp_path, minilm_dir):
    pairs = read_pairs_jsonl(tiny_pairs_jsonl(tmp_path / "p.jsonl", rows=16))
    tok = load_embedder(minilm_dir).tokenizer
    queries = TokenTable.build(tok, pairs.query_texts, "query", 16, 1)
    docs = TokenTable.build(tok, pairs.doc_texts, "doc", 32, 1)
    source = DenseBatchSource(pairs, queries, docs, 4, 1, 0, tok.pad_id)
    got = list(iterate(source, 2, 6))
    assert len(got) == 4
    for step, batch in zip(range(2, 6), got):
        expect = source.batch(step)
        assert batch.keys() == expect.keys()
        for k in expect:
            np.testing.assert_array_equal(batch[k], expect[k])
