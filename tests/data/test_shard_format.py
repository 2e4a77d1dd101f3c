"""The prepared-data manifest and the checks that hold it against a run, each one line naming the file and key."""

import json

import pytest

from jaxretrieval.data.shard_format import check_prepared, identity, read_manifest, shard_files, shards_of_process
from jaxretrieval.data.shard_writer import prepare_pairs
from jaxretrieval.data.train_pairs import iter_pair_records
from jaxretrieval.errors import InputError
from shard_fakes import FAKE, pair_lines


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("format")
    data = root / "pairs.jsonl"
    data.write_text(pair_lines(37))
    out = root / "shards"
    prepare_pairs(iter_pair_records(data), out, 4, FAKE, str(data))
    return out


SETTINGS = FAKE.settings


def test_steps_are_the_minimum_over_processes(prepared):
    manifest, steps = check_prepared(prepared, "pair_tokens", "dense", "fake-tokenizer", SETTINGS, 8, 2)
    assert [s["examples"] for s in manifest["shards"]] == [10, 9, 9, 9]
    assert steps == 4  # process 0 holds 19 records, process 1 18: min // 4
    assert shards_of_process(4, 1, 2) == [1, 3]
    assert [f.name for f in shard_files(prepared, manifest, 1, 2)] == [manifest["shards"][s]["file"] for s in (1, 3)]
    assert identity(prepared, manifest)["digest"] == manifest["digest"]


@pytest.mark.parametrize("change, message", [
    (dict(content="text_tokens"), r"dataset.json \[content\]: prepared for another task \(pair_tokens; task "
                                  r"distill reads text_tokens\)"),
    (dict(fingerprint="other"), r"\[tokenizer_fingerprint\]: prepared with a different tokenizer"),
    (dict(settings={"max_query_length": 6, "max_doc_length": 12}), r"\[max_doc_length\]: prepared with "
                                                                   r"max_doc_length 10 but the config asks for 12"),
    (dict(processes=5), r"\[shards\]: prepared with 4 shards, fewer than the 5 processes"),
    (dict(batch=9, processes=2), r"config \[batch_size\]: batch_size 9 is not divisible by 2 processes"),
    (dict(batch=40), r"\[batch_size\]: a process holds only 37 records, fewer than its batch of 40"),
    (dict(count="with_negatives", batch=2), None),
])
def test_a_mismatch_is_one_line(prepared, change, message):
    args = dict(content="pair_tokens", fingerprint="fake-tokenizer", settings=SETTINGS, batch=8, processes=1,
                count="examples")
    args.update(change)
    task = "distill" if args["content"] == "text_tokens" else "dense"
    call = lambda: check_prepared(prepared, args["content"], task, args["fingerprint"], args["settings"],  # noqa
                                  args["batch"], args["processes"], args["count"])
    if message is None:
        assert call()[1] == 18
        return
    with pytest.raises(InputError, match=message):
        call()


def test_old_missing_and_unreadable_manifests(prepared, tmp_path):
    manifest = read_manifest(prepared)
    old = tmp_path / "old"
    old.mkdir()
    (old / "dataset.json").write_text(json.dumps({**manifest, "format": "jaxretrieval.prepared/1"}))
    with pytest.raises(InputError, match=r"\[format\]: prepared by an older jaxretrieval"):
        read_manifest(old)
    (old / "dataset.json").write_text("{")
    with pytest.raises(InputError, match="cannot read prepared-data manifest"):
        read_manifest(old)
    gap = tmp_path / "gap"
    gap.mkdir()
    (gap / "dataset.json").write_text(json.dumps(manifest))
    for s in manifest["shards"][1:]:  # shard 0 never arrived
        (gap / s["file"]).write_bytes((prepared / s["file"]).read_bytes())
    with pytest.raises(InputError, match=rf"{manifest['shards'][0]['file']}: shard listed in the manifest is missing"):
        shard_files(gap, manifest, 0, 2)
    assert len(shard_files(gap, manifest, 1, 2)) == 2  # the other process's shards are all there
