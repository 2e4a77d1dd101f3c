"""Distillation data: teacher vector files are checked before use, batches carry this process's rows of texts and
vectors, and the fingerprint changes with the teachers (so a resume against other vectors is refused)."""

import numpy as np
import pytest

from jaxretrieval.data.pipeline import TokenTable
from jaxretrieval.data.text_batches import TextBatchSource, load_teacher_vectors
from jaxretrieval.errors import InputError


def _table(n: int) -> TokenTable:
    lengths = np.arange(n) % 5 + 2
    return TokenTable(np.arange(int(lengths.sum()), dtype=np.int32) % 40 + 1,
                      np.concatenate([[0], np.cumsum(lengths)]), (4, 8))


def test_teacher_files_are_checked(tmp_path):
    np.save(tmp_path / "ok.npy", np.ones((6, 4), np.float16))
    assert load_teacher_vectors(str(tmp_path / "ok.npy"), 6, "texts.jsonl").shape == (6, 4)
    np.save(tmp_path / "short.npy", np.ones((5, 4), np.float32))
    with pytest.raises(InputError, match="5 rows, but texts.jsonl has 6"):
        load_teacher_vectors(str(tmp_path / "short.npy"), 6, "texts.jsonl")
    (tmp_path / "trunc.npy").write_bytes((tmp_path / "ok.npy").read_bytes()[:60])
    with pytest.raises(InputError, match=r"\[distill.teacher_vectors\]: not a readable"):
        load_teacher_vectors(str(tmp_path / "trunc.npy"), 6, "texts.jsonl")
    np.save(tmp_path / "ints.npy", np.ones((6, 4), np.int32))
    with pytest.raises(InputError, match="expected a float matrix"):
        load_teacher_vectors(str(tmp_path / "ints.npy"), 6, "texts.jsonl")
    with pytest.raises(InputError, match="not found"):
        load_teacher_vectors(str(tmp_path / "none.npy"), 6, "texts.jsonl")


def test_batches_split_across_processes_and_fingerprint_the_teachers():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(16, 3)).astype(np.float32)

    def make(i, n, v=vectors):
        return TextBatchSource(_table(16), [v], [], [0], 8, 0, "t.jsonl", process_index=i, process_count=n,
                               teachers=("t.npy",))

    whole = make(0, 1)
    assert whole.steps_per_epoch == 2
    batch = whole.batch(3)
    assert batch["ids"].shape[0] == 8 and batch["teacher_vectors0"].shape == (8, 3)
    halves = [make(i, 2).batch(3) for i in range(2)]
    for k in batch:
        np.testing.assert_array_equal(np.concatenate([h[k] for h in halves]), batch[k])
    assert whole.fingerprint() == make(0, 1).fingerprint()
    assert whole.fingerprint() != make(0, 1, vectors[::-1].copy()).fingerprint()


def test_a_nonfinite_teacher_row_is_named(tmp_path):
    vectors = np.ones((6, 4), np.float32)
    vectors[4, 1] = np.inf
    np.save(tmp_path / "inf.npy", vectors)
    with pytest.raises(InputError, match=r"inf.npy \[distill.teacher_vectors\]: row 4 .*text 5 of t.jsonl"):
        load_teacher_vectors(str(tmp_path / "inf.npy"), 6, "t.jsonl")
