"""Text ids: one id per NFC-normalized text, stable across processes, and their int32 fold for the loss."""

import unicodedata

import numpy as np

from jaxretrieval.data.text_ids import batch_id, text_id


def test_one_id_per_normalized_text():
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    assert composed != decomposed and unicodedata.normalize("NFC", decomposed) == composed
    assert text_id(composed) == text_id(decomposed)
    assert text_id("Cafe") != text_id("cafe") and text_id("a b") != text_id("a  b")
    assert text_id("fox") == text_id("fox")  # no per-process salt (Python's hash() would have one)
    ids = [text_id(f"text {i}") for i in range(10000)]
    assert len(set(ids)) == len(ids) and all(-2 ** 63 <= i < 2 ** 63 for i in ids)


def test_batch_id_folds_both_halves_into_31_bits():
    ids = np.array([text_id(f"t{i}") for i in range(1000)] + [0, -1, 2 ** 32 + 5, 5], np.int64)
    folded = batch_id(ids)
    assert folded.dtype == np.int32 and (folded >= 0).all()
    reference = [((int(i) % 2 ** 64) ^ ((int(i) % 2 ** 64) >> 32)) & 0x7FFFFFFF for i in ids]
    assert folded.tolist() == reference
    assert folded[-2] != folded[-1]  # the high half counts
    assert len(set(folded[:1000].tolist())) == 1000
