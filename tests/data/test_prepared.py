"""Prepared TFRecord shards: each process reads only its shards, ids stay dataset-wide, shapes are fixed and equal
on every process, and bad manifests are caught."""

import json

import numpy as np
import pytest

from hf_tiny import tiny_prepared_shards
from jaxretrieval.convert.st_format import load_embedder
from jaxretrieval.data.prepared import load_process_shards, prepare_shards, prepared_batch_source, read_manifest
from jaxretrieval.data.train_pairs import read_pairs_jsonl
from jaxretrieval.errors import InputError


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return tiny_prepared_shards(tmp_path_factory.mktemp("prepared"))


def test_manifest_and_round_robin_split(prepared):
    _, data, out = prepared
    manifest = read_manifest(out)
    assert [s["examples"] for s in manifest["shards"]] == [10, 9, 9, 9]
    assert sorted(p.name for p in out.glob("*.tfrecord")) == [s["file"] for s in manifest["shards"]]
    pairs = read_pairs_jsonl(data)
    # process 1 of 2 owns shards 1 and 3: examples i with i % 4 in {1, 3}
    shards = load_process_shards(out, 1, 2)
    local, d_table, q_ids, d_ids = shards.pairs, shards.docs, shards.query_global_ids, shards.doc_global_ids
    assert shards.manifest["examples"] == len(pairs) and len(shards.queries.offsets) == len(q_ids) + 1
    mine = [i for i in range(len(pairs)) if i % 4 in (1, 3)]
    order = sorted(mine, key=lambda i: (i % 4, i))  # shard 1 first, then shard 3
    assert q_ids[local.query].tolist() == [int(pairs.query[i]) for i in order]
    assert [d_ids[p].tolist() for p in local.positives] == [pairs.positives[i].tolist() for i in order]
    assert [d_ids[n].tolist() for n in local.negatives] == [pairs.negatives[i].tolist() for i in order]
    # tokens are those of the dataset-wide text
    tok = load_embedder(prepared[0]).tokenizer
    text = pairs.doc_texts[int(d_ids[0])]
    expect = tok.tokenize([text], "doc", 24)["input_ids"][0]
    assert d_table.flat[d_table.offsets[0]:d_table.offsets[1]].tolist() == expect


def test_processes_build_equal_shapes_with_global_ids(prepared):
    model, _, out = prepared
    tok = load_embedder(model).tokenizer
    sources = [prepared_batch_source(out, tok, 8, 2, 0, 16, 24, p, 2) for p in range(2)]
    assert [s.steps_per_epoch for s in sources] == [4, 4]  # min(19, 18) // 4
    batches = [s.batch(5) for s in sources]
    for key in batches[0]:
        assert batches[0][key].shape == batches[1][key].shape, key
    assert batches[0]["query_ids"].shape == (4, 16) and batches[0]["neg_ids"].shape == (4, 2, 24)
    # different processes draw different examples
    assert not np.array_equal(batches[0]["query_text"], batches[1]["query_text"])
    # but they name the same dataset, so all of them resume the checkpoint they saved together
    assert sources[0].fingerprint() == sources[1].fingerprint()
    assert sources[0].fingerprint()["examples"] == read_manifest(out)["examples"]


def test_bad_prepared_inputs(prepared, tmp_path):
    model, data, out = prepared
    tok = load_embedder(model).tokenizer
    with pytest.raises(InputError, match="fewer than the 5 processes"):
        prepared_batch_source(out, tok, 10, 0, 0, 16, 24, 0, 5)
    with pytest.raises(InputError, match=r"\[max_doc_length\]: prepared with max_doc_length 24"):
        prepared_batch_source(out, tok, 8, 0, 0, 16, 32, 0, 1)
    with pytest.raises(InputError, match="not empty"):
        prepare_shards(read_pairs_jsonl(data), tok, out, 2, 16, 24)
    broken = tmp_path / "broken"
    broken.mkdir()
    manifest = read_manifest(out)
    manifest["shards"][0]["examples"] += 1
    (broken / "dataset.json").write_text(json.dumps(manifest))
    for s in manifest["shards"]:
        (broken / s["file"]).write_bytes((out / s["file"]).read_bytes())
    with pytest.raises(InputError, match="shard has 10 records, the manifest says 11"):
        load_process_shards(broken, 0, 1)


def test_a_missing_shard_or_another_tokenizer_is_one_line(prepared, tmp_path):
    model, _, out = prepared
    tok = load_embedder(model).tokenizer
    manifest = read_manifest(out)
    gap = tmp_path / "gap"
    gap.mkdir()
    (gap / "dataset.json").write_text(json.dumps(manifest))
    for s in manifest["shards"][1:]:  # shard 0 never arrived
        (gap / s["file"]).write_bytes((out / s["file"]).read_bytes())
    with pytest.raises(InputError, match=rf"{manifest['shards'][0]['file']}: shard listed in the manifest is missing"):
        prepared_batch_source(gap, tok, 8, 2, 0, 16, 24, 0, 1)
    other = tmp_path / "other"
    other.mkdir()
    (other / "dataset.json").write_text(json.dumps({**manifest, "tokenizer_fingerprint": "0123456789abcdef"}))
    with pytest.raises(InputError, match=r"dataset.json \[tokenizer_fingerprint\]: prepared with a different tok"):
        prepared_batch_source(other, tok, 8, 2, 0, 16, 24, 0, 1)
