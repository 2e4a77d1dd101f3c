"""STS-B style files: scores and sentence pairs read; bad rows name file and line."""

import numpy as np
import pytest

from jaxretrieval.data.sts_file import is_sts_file, read_sts
from jaxretrieval.errors import InputError


def _sts_file(path, rows):
    path.write_text("".join(f"g\tf\t2020\t{i}\t{s}\t{a}\t{b}\textra\n" for i, (s, a, b) in enumerate(rows)))
    return path


def test_rows_are_read_with_extra_fields_ignored(tmp_path):
    path = _sts_file(tmp_path / "sts-train.csv", [(5.0, "a b", "c"), (0.25, "d", "e f")])
    first, second, scores = read_sts(path)
    assert (first, second) == (["a b", "d"], ["c", "e f"])
    np.testing.assert_array_equal(scores, [5.0, 0.25])
    assert is_sts_file(path) and is_sts_file("x.tsv") and not is_sts_file("x.jsonl")


def test_bad_rows_name_file_and_line(tmp_path):
    (tmp_path / "short.tsv").write_text("a\tb\tc\n")
    with pytest.raises(InputError, match=r"short.tsv:1: expected >= 7"):
        read_sts(tmp_path / "short.tsv")
    _sts_file(tmp_path / "bad.tsv", [("high", "a", "b")])
    with pytest.raises(InputError, match=r"bad.tsv:1 \[score\]"):
        read_sts(tmp_path / "bad.tsv")
