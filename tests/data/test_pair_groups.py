"""The reranker's batches: each query's group holds a positive first, then negatives; a process builds only its
rows, all processes the same shapes; in-batch negatives never include one of the row's own positives."""

import numpy as np
from transformers import AutoTokenizer

from hf_tiny import tiny_bert, tiny_pairs_jsonl
from jaxretrieval.data.pair_groups import PairGroupSource
from jaxretrieval.data.pair_tokens import PairTokenizer
from jaxretrieval.data.train_pairs import read_pairs_jsonl


def _source(tmp_path, **kwargs):
    pairs = read_pairs_jsonl(tiny_pairs_jsonl(tmp_path / "p.jsonl", rows=12, negatives=3))
    tok = PairTokenizer(AutoTokenizer.from_pretrained(str(tiny_bert(tmp_path / "m"))), max_length=40)
    return pairs, PairGroupSource(pairs, tok, 4, 3, seed=0, scored=False, **kwargs)


def test_groups_and_process_slices(tmp_path):
    pairs, whole = _source(tmp_path)
    assert whole.steps_per_epoch == 3
    batch = whole.batch(1)
    assert batch["ids"].shape[:2] == (4, 3)
    halves = [_source(tmp_path, process_index=i, process_count=2)[1].batch(1) for i in range(2)]
    for k in batch:
        np.testing.assert_array_equal(np.concatenate([h[k] for h in halves]), batch[k])


def test_in_batch_negatives_are_never_a_positive_of_the_row(tmp_path):
    pairs, source = _source(tmp_path, in_batch_negatives=2)
    positives = {}
    for q, pos in zip(pairs.query, pairs.positives):
        positives.setdefault(int(q), set()).update(int(d) for d in pos)
    for step in range(6):
        epoch, index = divmod(step, source.steps_per_epoch)
        q, p, n = (x[index * 4:(index + 1) * 4] for x in source.plans(epoch)[:3])
        extra = source.draw_in_batch_negatives(q, np.concatenate([p[:, None], n], axis=1), epoch, index)
        assert extra.shape == (4, 2)
        for row, picks in zip(q, extra):
            assert not positives[int(row)] & set(picks.tolist())
        assert source.batch(step)["ids"].shape[:2] == (4, 5)
