"""STS: Spearman of cosine against gold, with tied ranks averaged as scipy does."""

import numpy as np
import pytest

from hf_tiny import tiny_embedder_dir
from jaxretrieval.convert.st_format import load_embedder
from jaxretrieval.data.sts_file import read_sts
from jaxretrieval.eval.sts import evaluate_sts, rank_average, spearman
from jaxretrieval.inference import encode_texts


def test_ranks_and_spearman_match_the_definitions():
    np.testing.assert_array_equal(rank_average(np.array([3.0, 1.0, 3.0, 2.0])), [3.5, 1.0, 3.5, 2.0])
    a = np.random.default_rng(0).normal(size=50)
    assert spearman(a, a ** 3) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    b = np.random.default_rng(1).normal(size=50)
    ra, rb = rank_average(a), rank_average(b)
    assert spearman(a, b) == pytest.approx(np.corrcoef(ra, rb)[0, 1])


def _sts_file(path, rows):
    path.write_text("".join(f"g\tf\t2020\t{i}\t{s}\t{a}\t{b}\n" for i, (s, a, b) in enumerate(rows)))
    return path


def test_evaluate_sts_is_spearman_of_cosines(tmp_path):
    rows = [(5.0, "quick fox", "quick brown fox"), (0.5, "hello world", "lazy dog"), (3.0, "fox", "dog fox"),
            (1.0, "world", "jumps over")]
    path = _sts_file(tmp_path / "sts.tsv", rows)
    loaded = load_embedder(tiny_embedder_dir(tmp_path / "m"))
    first, second, gold = read_sts(path)
    a, b = encode_texts(loaded, first), encode_texts(loaded, second)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert evaluate_sts(loaded, path) == {"sts_spearman": pytest.approx(spearman(cos, gold), abs=1e-6)}
