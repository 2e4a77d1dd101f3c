"""Packing lays texts out densely and exactly: every text once, whole and contiguous, segment ids restarting per
row, pooling indices pointing at each text's own first/last pooled token, the global layout of a packed training
stream agreeing across processes."""

import numpy as np
import pytest

from jaxretrieval.data.packing import (pack_rows, packed_batch, packed_batches, packed_stream, packed_tokens,
                                       texts_per_row)


def _texts(n=40, seed=0, longest=30):
    rng = np.random.default_rng(seed)
    return [list(rng.integers(5, 99, size=int(k))) for k in rng.integers(1, longest + 1, size=n)]


def test_rows_hold_every_text_once_and_never_overflow():
    lengths = [len(t) for t in _texts()]
    rows = pack_rows(lengths, 32, 6)
    flat = [i for row in rows for i in row]
    assert sorted(flat) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= 32 and len(row) <= 6 for row in rows)
    # best fit: no text left for a later row would have fitted an earlier row's free space (up to max_per_row)
    for r, row in enumerate(rows):
        free = 32 - sum(lengths[i] for i in row)
        later = [lengths[i] for other in rows[r + 1:] for i in other]
        assert len(row) == 6 or not later or min(later) > free or r == len(rows) - 1
    assert pack_rows(lengths, 32, 6) == rows  # deterministic


def test_packed_batch_layout_round_trips():
    texts = _texts(seed=1)
    batches = list(packed_batches(texts, None, 4, 32, pad_id=0, skip=1))
    seen = set()
    for b in batches:
        assert b.input_ids.shape == (4, 32) and b.first.shape == (4 * texts_per_row(32),)
        for slot, text in enumerate(b.index):
            if text < 0:
                continue
            seen.add(int(text))
            tokens = np.flatnonzero(b.token_text.reshape(-1) == slot)
            assert len(tokens) == len(texts[text]) - 1 or len(texts[text]) == 1  # the skipped prompt token
            row, col = divmod(int(b.last[slot]), 32)
            start = col - len(texts[text]) + 1
            assert list(b.input_ids[row, start:col + 1]) == texts[text]
            assert len(set(b.segment_ids[row, start:col + 1])) == 1 and b.segment_ids[row, start] > 0
            assert int(b.first[slot]) == row * 32 + min(start + 1, col)
        assert b.real_tokens == int((b.attention_mask > 0).sum())
    assert seen == set(range(len(texts)))
    assert packed_tokens([len(t) for t in texts], 4, 32) == len(batches) * 4 * 32


def test_too_long_and_too_many_are_refused():
    with pytest.raises(ValueError, match="does not fit"):
        pack_rows([40], 32, 4)
    with pytest.raises(ValueError, match="slot"):
        packed_batch([[0, 1, 2]], [[5], [6], [7]], None, 1, 8, 2, 0)


def test_a_packed_stream_is_one_global_layout_across_processes():
    texts = _texts(16, seed=2)
    slots = [np.arange(8) * 2, np.arange(8) * 2 + 1]  # interleaved, as the docs' positives/negatives are
    shares = [[texts[s] for s in share] for share in slots]
    parts = [packed_stream(shares, slots, 32, 0, p, row_multiple=2) for p in range(2)]
    assert parts[0]["ids"].shape == parts[1]["ids"].shape and parts[0]["ids"].shape[0] % 2 == 0
    ids = np.concatenate([p["ids"] for p in parts]).reshape(-1)
    first = np.concatenate([p["first"] for p in parts])
    last = np.concatenate([p["last"] for p in parts])
    token_text = np.concatenate([p["token_text"] for p in parts]).reshape(-1)
    for slot, text in enumerate(texts):
        assert list(ids[first[slot]:last[slot] + 1]) == text
        assert list(np.flatnonzero(token_text == slot)) == list(range(first[slot], last[slot] + 1))
