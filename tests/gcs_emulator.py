"""A local Google Cloud Storage for tests: the `gcp-storage-emulator` package on 127.0.0.1, in memory, started and
stopped by the tests. Everything is pointed at loopback: the emulator through STORAGE_EMULATOR_HOST (which
jaxretrieval passes on to gcsfs and TensorStore) and the metadata server variables, so no client library looks for
credentials or buckets anywhere else.

Three things real GCS does and the emulator does not are added when it is started from this file: downloads
carry the object's generation (`x-goog-generation`, which TensorStore's OCDBT store reads before it writes, so
Orbax cannot save without it); uploads honour `ifGenerationMatch` (412 when the object's generation differs, 0
meaning "must not exist"), which one-writer locks and OCDBT's manifest updates rely on; and a multipart upload
keeps every byte of the file (`_binary_safe_read_data`)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

BUCKET = "jaxretrieval-test"  # a valid GCS bucket name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loopback_env(port: int, cache: Path) -> dict[str, str]:
    """The variables a test process (and the CLI processes it starts) needs to use the emulator and nothing else."""
    return {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}", "GCE_METADATA_HOST": "127.0.0.1:1",
            "GCE_METADATA_ROOT": "127.0.0.1:1", "GCE_METADATA_IP": "127.0.0.1:1", "NO_GCE_CHECK": "true",
            "GOOGLE_CLOUD_PROJECT": "jaxretrieval-test", "JAXRETRIEVAL_CACHE_DIR": str(cache)}


@contextlib.contextmanager
def running_emulator(log: Path, cache: Path):
    port = free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, __file__, "start", "--host", "127.0.0.1", "--port", str(port),
                                 "--default-bucket", BUCKET, "--in-memory", "-q"],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"the GCS emulator did not start: {log.read_text()[-2000:]}")
                time.sleep(0.1)
        yield port, loopback_env(port, cache)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


class Gcs:
    """The running emulator as the tests see it: `url("a/b")` is a fresh gs:// location for one test."""

    def __init__(self, port: int, env: dict[str, str]):
        self.port, self.env = port, env

    def url(self, name: str = "") -> str:
        return f"gs://{BUCKET}/{uuid.uuid4().hex[:10]}/{name}".rstrip("/")

    def put_tree(self, local: Path, url: str) -> str:
        """Upload a local file or folder to `url` (as a user would with gcloud storage cp -r)."""
        from jaxretrieval.files import upload

        files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
        for f in files:
            upload(f, url if local.is_file() else f"{url}/{f.relative_to(local).as_posix()}")
        return url

    def process_env(self, **extra) -> dict[str, str]:
        return {**os.environ, **self.env, **extra}


def _like_gcs() -> None:
    """Wrap the emulator's download and upload handlers (before its server module builds its routing table)."""
    from http import HTTPStatus

    from gcp_storage_emulator.exceptions import NotFound
    from gcp_storage_emulator import server
    from gcp_storage_emulator.handlers import objects

    def generation(storage, bucket, name):
        try:
            return storage.get_file_obj(bucket, name)["generation"]
        except NotFound:
            return None

    download, insert = objects.download, objects.insert

    def download_with_generation(request, response, storage, *args, **kwargs):
        download(request, response, storage, *args, **kwargs)
        found = generation(storage, request.params["bucket_name"], request.params["object_id"])
        if found is not None:
            response["x-goog-generation"] = found
            response["x-goog-metageneration"] = "1"

    def insert_with_precondition(request, response, storage, *args, **kwargs):
        want = request.query.get("ifGenerationMatch", [None])[0]
        if want is not None:
            name = request.query.get("name", [None])[0]
            if name is None and isinstance(request.data, dict) and isinstance(request.data.get("meta"), dict):
                name = request.data["meta"].get("name")
            have = generation(storage, request.params["bucket_name"], name) if name else None
            if (have or "0") != want:
                response.status = HTTPStatus.PRECONDITION_FAILED
                response.json({"error": {"code": 412, "message": "At least one of the pre-conditions you "
                                                                  "specified did not hold."}})
                return None
        return insert(request, response, storage, *args, **kwargs)

    objects.download, objects.insert = download_with_generation, insert_with_precondition
    server._read_data = _binary_safe_read_data(server._read_data)


def _binary_safe_read_data(read_data):
    """The emulator parses a multipart upload with Python's email parser, which treats the content as lines: a file
    ending in "\r" (a TFRecord's last CRC byte can be one) loses that byte, since gcsfs ends the part with "\n"
    and the parser strips "\r\n". GCS itself keeps every byte; this split keeps them too."""
    import json

    from gcp_storage_emulator import server

    def read(request_handler, query):
        content_type = request_handler.headers.get("Content-Type") or ""
        if not content_type.startswith("multipart/related"):
            return read_data(request_handler, query)
        raw = server._decode_raw_data(server._read_raw_data(request_handler), request_handler)
        boundary = b"--" + content_type.split("boundary=", 1)[1].split(";")[0].strip().strip('"').encode()
        rest = raw.split(boundary, 1)[1]
        eol = b"\r\n" if rest.startswith(b"\r\n") else b"\n"  # the producer's line ending, used throughout
        parts = []
        for part in rest.split(eol + boundary)[:2]:  # the metadata part, then the content part
            head, _, body = part.removeprefix(eol).partition(eol + eol)
            fields = dict(line.split(b":", 1) for line in head.split(eol) if b":" in line)
            kind = {k.strip().lower(): v.strip() for k, v in fields.items()}.get(b"content-type", b"")
            parts.append((kind.decode().split(";")[0], body))
        return {"meta": json.loads(parts[0][1]), "content": parts[1][1], "content-type": parts[1][0]}

    return read


if __name__ == "__main__":
    _like_gcs()
    from gcp_storage_emulator.__main__ import main

    sys.exit(main(sys.argv[1:]))
