"""Line-numbered jsonl and text readers that fail with the file and line of the first bad record, and the jsonl
writer."""

from __future__ import annotations

import json
import os
from typing import Any, Iterator

from jaxretrieval.data.text_ids import text_id
from jaxretrieval.errors import InputError
from jaxretrieval.files import atomic_file, upath


def iter_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its line ending) of a UTF-8 text file. Lines are decoded one by one, so
    a byte that is not UTF-8 is reported at its line, not as a decoder traceback from somewhere in the file."""
    p = upath(path)
    if not p.exists():
        raise InputError("file not found", p)
    if p.is_dir():
        raise InputError("expected a file, got a directory", p)
    with p.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(f"not UTF-8 text (byte {raw[e.start]:#04x} at column {e.start + 1})", p,
                                 lineno) from None
            line = line.rstrip("\r\n")
            yield lineno, line.removeprefix("\ufeff") if lineno == 1 else line  # a byte-order mark is no text


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """(1-based line number, object) for each non-blank line; a line that is not a JSON object is an error."""
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"not valid JSON ({e.msg} at column {e.colno})", path, lineno) from None
        if not isinstance(obj, dict):
            raise InputError(f"expected a JSON object, got {type(obj).__name__}", path, lineno)
        yield lineno, obj


def require_str(obj: dict[str, Any], key: str, path, lineno: int, allow_empty: bool = True) -> str:
    if key not in obj:
        raise InputError(f"missing field {key!r}", path, lineno, field=key)
    value = obj[key]
    if not isinstance(value, str):
        raise InputError(f"field {key!r} must be a string, got {type(value).__name__}", path, lineno, field=key)
    if not allow_empty and not value.strip():
        raise InputError(f"field {key!r} is empty", path, lineno, field=key)
    return value


def read_texts(path: str | os.PathLike) -> list[str]:
    """Texts to encode: `.txt` gives one per line; `.jsonl` gives field `text`, with `title` + " " prepended if set.
    A `.jsonl` in the {query, pos, neg} training format is flattened: every query, positive and negative text
    once, in order of first appearance (so teacher vectors for distillation can come from training data)."""
    return [text for _, text in iter_texts(path)]


def iter_texts(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """`read_texts` one (line number, text) at a time. The flattening of training records remembers the 64-bit ids
    of the texts it has seen (data/text_ids.py), not the texts."""
    p = upath(path)
    if p.suffix == ".jsonl":
        seen = set()
        for lineno, obj in iter_jsonl(p):
            if "text" not in obj and "query" in obj:
                record = [require_str(obj, "query", p, lineno)]
                for key in ("pos", "neg"):
                    values = obj.get(key, [])
                    values = [values] if isinstance(values, str) else values
                    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                        raise InputError(f"field {key!r} must be a list of strings", p, lineno, field=key)
                    record += values
                for text in record:
                    key = text_id(text)
                    if key not in seen:
                        seen.add(key)
                        yield lineno, text
                continue
            text = require_str(obj, "text", p, lineno)
            title = obj.get("title")
            yield lineno, f"{title} {text}" if isinstance(title, str) and title else text
        return
    if p.suffix == ".txt":
        yield from iter_lines(p)
        return
    raise InputError("input must be a .txt (one text per line) or .jsonl (field 'text') file", p)


def write_jsonl(path: str | os.PathLike, records: list[dict[str, Any]]) -> None:
    """One JSON object per line, UTF-8, written atomically (files.atomic_file)."""
    with atomic_file(path, "w") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
