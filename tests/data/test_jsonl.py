"""Line-numbered readers and the atomic jsonl writer."""

import json

import pytest

from jaxretrieval.data.jsonl import iter_jsonl, read_texts, require_str, write_jsonl
from jaxretrieval.errors import InputError


def test_round_trip_skips_blank_lines(tmp_path):
    records = [{"query": "ünïcode", "pos": ["a"]}, {"query": "b", "pos": ["c", "d"]}]
    write_jsonl(tmp_path / "r.jsonl", records)
    text = (tmp_path / "r.jsonl").read_text(encoding="utf-8")
    assert "ünïcode" in text  # written as UTF-8, not escaped
    (tmp_path / "r.jsonl").write_text(text + "\n\n")
    assert [obj for _, obj in iter_jsonl(tmp_path / "r.jsonl")] == records


@pytest.mark.parametrize("line, expect", [("not json", "not valid JSON"), ("[1, 2]", "expected a JSON object")])
def test_bad_lines_name_file_and_line(tmp_path, line, expect):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"text": "ok"}) + "\n" + line + "\n")
    with pytest.raises(InputError, match=rf"bad.jsonl:2: {expect}"):
        list(iter_jsonl(path))


def test_read_texts_formats(tmp_path):
    (tmp_path / "t.txt").write_text("a\nb\n\n")
    assert read_texts(tmp_path / "t.txt") == ["a", "b", ""]
    (tmp_path / "t.jsonl").write_text('{"text": "x", "title": "T"}\n{"text": "y"}\n')
    assert read_texts(tmp_path / "t.jsonl") == ["T x", "y"]
    (tmp_path / "p.jsonl").write_text('{"query": "q", "pos": ["d"], "neg": ["e", "d"]}\n{"query": "q", "pos": "f"}\n')
    assert read_texts(tmp_path / "p.jsonl") == ["q", "d", "e", "f"]  # each distinct text once
    with pytest.raises(InputError, match=r"\[text\]: field 'text' is empty"):
        require_str({"text": " "}, "text", "f.jsonl", 3, allow_empty=False)
    with pytest.raises(InputError, match="must be a .txt"):
        read_texts(tmp_path / "x.csv")


def test_bytes_that_are_not_utf8_name_their_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(InputError, match=r"latin1.jsonl:2: not UTF-8 text \(byte 0xe9 at column 14\)"):
        list(iter_jsonl(path))


def test_gs_files_read_and_write_like_local_ones(gcs):
    url = gcs.url("r.jsonl")
    records = [{"query": "ünïcode", "pos": ["a"]}, {"query": "b", "pos": ["c"]}]
    write_jsonl(url, records)
    assert [obj for _, obj in iter_jsonl(url)] == records
    assert read_texts(url) == ["ünïcode", "a", "b", "c"]
    from jaxretrieval.files import upath

    bad = gcs.url("latin1.jsonl")
    with upath(bad).open("wb") as f:
        f.write(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(InputError, match=rf"{bad}:2: not UTF-8 text"):
        list(iter_jsonl(bad))
    with pytest.raises(InputError, match="file not found"):
        list(iter_jsonl(gcs.url("absent.jsonl")))
