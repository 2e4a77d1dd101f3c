"""Batches from prepared records: the drawn documents' tokens, ids and teacher scores stay together, draws are a
function of (seed, epoch, process, index), in-batch negatives are never a positive of the row's query."""

import numpy as np
import pytest
import tensorflow as tf

from hf_tiny import tiny_embedder_dir
from jaxretrieval.convert.st_format import load_embedder
from jaxretrieval.data.pair_tokens import PairTokenizer
from jaxretrieval.data.shard_batches import PairTextBatches, PairTokenBatches, TextTokenBatches
from jaxretrieval.data.shard_writer import Tokenization, prepare_pairs, prepare_texts
from jaxretrieval.data.text_ids import batch_id, text_id
from jaxretrieval.data.train_pairs import PairRecord
from jaxretrieval.errors import InputError
from shard_fakes import FAKE, char_tokens


def _raw(out, manifest):
    return [r.numpy() for s in manifest["shards"] for r in tf.data.TFRecordDataset(str(out / s["file"]))]


def _scored_records(n=6):
    return [PairRecord(f"query {i}", [f"pos {i} {k}" for k in range(2)], [f"neg {i} {k}" for k in range(5)],
                       np.array([10.0 * i + k for k in range(2)], np.float32),
                       np.array([-10.0 * i - k for k in range(5)], np.float32), i + 1) for i in range(n)]


def test_pair_tokens_keep_documents_and_scores_together(tmp_path):
    records = _scored_records()
    manifest = prepare_pairs(records, tmp_path / "s", 1, FAKE, "r")
    raw = _raw(tmp_path / "s", manifest)
    make = PairTokenBatches(3, 0, 0, 0, 1, (6,), (8, 10), True, "r")
    b = make(raw, 2, 5)
    assert b["neg_ids"].shape == (6, 3, 8) and b["query_ids"].shape == (6, 6) and b["pos_score"].shape == (6,)
    docs = {t: (batch_id([text_id(t)])[0], char_tokens([t], "doc")[0]) for r in records for t in (*r.pos, *r.neg)}
    by_id = {i: (t, tokens) for t, (i, tokens) in docs.items()}
    for row, r in enumerate(records):
        assert b["query_text"][row] == batch_id([text_id(r.query)])[0]
        pos_text, tokens = by_id[b["pos_doc"][row]]
        assert pos_text in r.pos and b["pos_ids"][row, :len(tokens)].tolist() == tokens
        assert b["pos_score"][row] == r.pos_scores[r.pos.index(pos_text)]
        negs = [by_id[i][0] for i in b["neg_doc"][row]]
        assert len(set(negs)) == 3 and set(negs) <= set(r.neg)  # without replacement: it has 5
        assert b["neg_scores"][row].tolist() == [r.neg_scores[r.neg.index(t)] for t in negs]
        assert b["query_mask"][row].sum() == len(char_tokens([r.query], "query")[0])
        assert (b["query_ids"][row][b["query_mask"][row] == 0] == 1).all()  # padded with the query pad id
    again = make(raw, 2, 5)
    assert all(np.array_equal(b[k], again[k]) for k in b)
    other = make(raw, 2, 6)
    assert not np.array_equal(b["neg_doc"], other["neg_doc"])
    none = PairTokenBatches(0, 0, 0, 0, 0, (6,), (10,), False, "r")(raw, 0, 0)
    assert none["neg_ids"].shape == (6, 0, 10) and none["neg_doc"].shape == (6, 0)


def test_pair_texts_groups_and_in_batch_negatives(tmp_path):
    model = load_embedder(tiny_embedder_dir(tmp_path / "m"))
    records = _scored_records(4) + [PairRecord("query 0", ["pos 0 0"], ["neg x"], np.ones(1, np.float32),
                                               np.zeros(1, np.float32), 5)]
    manifest = prepare_pairs(records, tmp_path / "s", 1, None, "r")
    raw = _raw(tmp_path / "s", manifest)
    tok = PairTokenizer(model.tokenizer.tokenizer, max_length=48)
    b = PairTextBatches(tok, 3, 2, True, 0, 0, (16, 32, 48), "r")(raw, 0, 0)
    assert b["ids"].shape[:2] == (5, 5) and b["ids"].shape[2] in (16, 32, 48) and b["scores"].shape == (5, 5)
    assert (b["scores"][:, 3:] == 0).all()  # in-batch candidates are labeled 0
    assert b["scores"][0, 0] in (0.0, 1.0) and (b["scores"][1:4, 0] >= 10).all()
    decoded = [[tok.tokenizer.decode(b["ids"][i, g][b["mask"][i, g] == 1]) for g in range(5)] for i in range(5)]
    for i in (0, 4):  # rows 0 and 4 share "query 0": neither gets a positive of either as in-batch negative
        assert not any("pos 0" in text for text in decoded[i][3:]), decoded[i]
    with pytest.raises(InputError, match=r"\[neg\]: a prepared record has no negatives"):
        bare = prepare_pairs([PairRecord("q", ["d"], [], None, None, 1)] * 2, tmp_path / "bare", 1, None, "r",
                             random_negatives=0)
        PairTextBatches(tok, 2, 0, False, 0, 0, (48,), "r")(_raw(tmp_path / "bare", bare), 0, 0)


def test_text_tokens_bring_each_teachers_rows(tmp_path):
    texts = [(i + 1, f"text {i} " * (i + 1)) for i in range(5)]
    vectors = [np.arange(10, dtype=np.float32).reshape(5, 2), np.ones((5, 3), np.float32)]
    tokens = Tokenization(FAKE.encode, "fake", {"max_length": 10})
    manifest = prepare_texts(texts, vectors, ["a", "b"], tmp_path / "s", 1, tokens, "t")
    b = TextTokenBatches(2, 0, (4, 10))(_raw(tmp_path / "s", manifest), 0, 0)
    assert b["ids"].shape == (5, 10)
    assert b["mask"].sum(1).tolist() == [len(char_tokens([t], "doc")[0]) for _, t in texts]
    np.testing.assert_array_equal(b["teacher_vectors0"], vectors[0])
    np.testing.assert_array_equal(b["teacher_vectors1"], vectors[1])
