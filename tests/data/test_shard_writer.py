"""Streaming `prepare`: records round-robin into shards with their tokens, text ids, scores and teacher rows; random
negatives for records without any; a digest of the data; nothing left behind by a failed prepare."""

import json

import numpy as np
import pytest
import tensorflow as tf

from jaxretrieval.data.shard_writer import DocReservoir, prepare_pairs, prepare_texts
from jaxretrieval.data.text_ids import text_id
from jaxretrieval.data.train_pairs import PairRecord, iter_pair_records
from jaxretrieval.errors import InputError
from shard_fakes import FAKE, char_tokens, pair_lines


def _records(path):
    return [tf.train.Example.FromString(r.numpy()).features.feature for r in tf.data.TFRecordDataset(str(path))]


def _ints(f, key):
    return list(f[key].int64_list.value)


def test_pairs_go_round_robin_with_tokens_ids_and_scores(tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text(pair_lines(23, scored=True))
    out = tmp_path / "shards"
    manifest = prepare_pairs(iter_pair_records(data), out, 3, FAKE, str(data), chunk=4)
    assert manifest["content"] == "pair_tokens" and manifest["scored"] and manifest["examples"] == 23
    assert [s["examples"] for s in manifest["shards"]] == [8, 8, 7]
    assert json.loads((out / "dataset.json").read_text()) == manifest
    source = list(iter_pair_records(data))
    for s, shard in enumerate(manifest["shards"]):
        for k, f in enumerate(_records(out / shard["file"])):
            r = source[s + 3 * k]  # record i is in shard i mod 3
            assert _ints(f, "query_id") == [text_id(r.query)]
            assert _ints(f, "query_tokens") == char_tokens([r.query], "query")[0]
            assert _ints(f, "pos_ids") == [text_id(t) for t in r.pos]
            assert _ints(f, "pos_lengths") == [len(t) for t in char_tokens(r.pos, "doc")]
            assert _ints(f, "pos_tokens") == [x for t in char_tokens(r.pos, "doc") for x in t]
            assert _ints(f, "neg_ids") == [text_id(t) for t in r.neg]
            assert list(f["pos_scores"].float_list.value) == r.pos_scores.tolist()
            assert list(f["neg_scores"].float_list.value) == r.neg_scores.tolist()
            assert _ints(f, "neg_random") == [0]
    sample = [json.loads(x)["text"] for x in (out / "sample.jsonl").read_text().splitlines()]
    texts = {t for r in source for t in (r.query, *r.pos, *r.neg)}
    assert sample and set(sample) <= texts
    # the digest names the data: the same records give the same digest, another record another
    again = prepare_pairs(iter_pair_records(data), tmp_path / "again", 5, FAKE, str(data), chunk=7)
    assert again["digest"] == manifest["digest"]
    data.write_text(pair_lines(23, scored=True).replace('"q3"', '"q33"'))
    assert prepare_pairs(iter_pair_records(data), tmp_path / "other", 3, FAKE, str(data))["digest"] != \
        manifest["digest"]


def test_texts_content_for_the_reranker(tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text(pair_lines(5))
    manifest = prepare_pairs(iter_pair_records(data), tmp_path / "shards", 1, None, str(data))
    assert manifest["content"] == "pair_texts" and "tokenizer_fingerprint" not in manifest
    f = _records(tmp_path / "shards" / manifest["shards"][0]["file"])[2]
    assert [t.decode() for t in f["pos_text"].bytes_list.value] == ["doc 2"]
    assert f["query_text"].bytes_list.value[0].decode() == "q2"


def test_records_without_negatives_get_random_ones_not_their_positives(tmp_path):
    records = [PairRecord(f"q{i}", [f"d{i % 9}"], [], None, None, i + 1) for i in range(40)]
    out = tmp_path / "shards"
    manifest = prepare_pairs(records, out, 2, FAKE, "beir", chunk=8, random_negatives=3)
    assert [s["with_negatives"] for s in manifest["shards"]] == [0, 0]  # drawn ones are not the record's own
    for shard in manifest["shards"]:
        for f in _records(out / shard["file"]):
            negs = _ints(f, "neg_ids")
            assert _ints(f, "neg_random") == [1] and len(negs) == 3 and len(set(negs)) == 3
            assert not set(negs) & set(_ints(f, "pos_ids"))
            assert sum(_ints(f, "neg_lengths")) == len(_ints(f, "neg_tokens"))


def test_reservoir_is_a_uniform_sample_of_bounded_size():
    counts = np.zeros(100)
    for seed in range(400):
        r = DocReservoir(10, seed)
        for i in range(100):
            r.add(i, str(i))
        assert len(r.ids) == 10 and r.items == [str(i) for i in r.ids]
        counts[r.ids] += 1
    assert counts.min() > 10 and counts.max() < 80  # each kept about 40 times in 400 draws of 10 from 100
    assert {i for i, _ in r.draw(5, exclude=set(r.ids[:8]))} == set(r.ids[8:])


def test_a_failed_prepare_leaves_nothing(tmp_path):
    data = tmp_path / "mixed.jsonl"
    lines = pair_lines(6, scored=True).splitlines()
    lines[4] = pair_lines(5).splitlines()[4]  # record 5 has no scores
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "shards"
    with pytest.raises(InputError, match=r"mixed.jsonl:5 \[pos_scores\]: some records have pos_scores"):
        prepare_pairs(iter_pair_records(data), out, 2, FAKE, str(data), chunk=2)
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["mixed.jsonl"]
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        prepare_pairs(iter_pair_records(tmp_path / "mixed.jsonl"), out, 2, FAKE, "x")
    assert (out / "keep.txt").read_text() == "mine"


def test_texts_carry_their_teacher_rows(tmp_path):
    texts = [(i + 1, f"text number {i}") for i in range(11)]
    a, b = np.arange(22, dtype=np.float16).reshape(11, 2), np.arange(33, dtype=np.float32).reshape(11, 3) / 7
    tok = FAKE.__class__(FAKE.encode, "fake", {"max_length": 10})
    manifest = prepare_texts(texts, [a, b], ["a.npy", "b.npy"], tmp_path / "s", 2, tok, "texts.txt", chunk=4)
    assert manifest["teacher_dims"] == [2, 3] and manifest["teachers"] == ["a.npy", "b.npy"]
    rows = _records(tmp_path / "s" / manifest["shards"][1]["file"])
    for k, f in enumerate(rows):
        i = 1 + 2 * k
        assert _ints(f, "text_id") == [text_id(texts[i][1])] and _ints(f, "tokens") == char_tokens([texts[i][1]],
                                                                                                   "doc")[0]
        np.testing.assert_array_equal(f["teacher0"].float_list.value, a[i].astype(np.float32))
        np.testing.assert_allclose(f["teacher1"].float_list.value, b[i], rtol=1e-7)
    with pytest.raises(InputError, match=r"texts.txt:11 \[distill.teacher_vectors\]: more texts than the 10 rows"):
        prepare_texts(texts, [a[:10]], ["a.npy"], tmp_path / "short", 1, tok, "texts.txt", chunk=4)
    with pytest.raises(InputError, match=r"a.npy \[distill.teacher_vectors\]: 11 teacher vector rows, but texts.txt "
                                         r"has 10 texts"):
        prepare_texts(texts[:10], [a], ["a.npy"], tmp_path / "long", 1, tok, "texts.txt")
    bad = b.copy()
    bad[6, 1] = np.nan
    with pytest.raises(InputError, match=r"b.npy \[distill.teacher_vectors\]: row 6 \(0-based\) is not finite"):
        prepare_texts(texts, [a, bad], ["a.npy", "b.npy"], tmp_path / "nan", 1, tok, "texts.txt", chunk=4)
    assert not any((tmp_path / n).exists() for n in ("short", "long", "nan"))
