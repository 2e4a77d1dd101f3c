"""STS-B style files: tab-separated rows of genre, file, year, id, gold score (0-5), sentence 1, sentence 2.

Evaluation correlates a model's cosines with the gold scores (eval/sts.py); training reads the pairs that score at
least a threshold as (query, positive) pairs (data/train_pairs.py).
"""

from __future__ import annotations

import os

import numpy as np

from jaxretrieval.data.jsonl import iter_lines
from jaxretrieval.errors import InputError


def is_sts_file(path) -> bool:
    """STS-B files are .csv or .tsv (tab-separated either way)."""
    return str(path).endswith((".csv", ".tsv"))


def read_sts(path: str | os.PathLike) -> tuple[list[str], list[str], np.ndarray]:
    """STS-B tab-separated rows: genre, file, year, id, score, sentence 1, sentence 2 (extra fields ignored)."""
    first, second, scores = [], [], []
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 7:
            raise InputError(f"expected >= 7 tab-separated fields, got {len(fields)}", path, lineno)
        try:
            score = float(fields[4])
        except ValueError:
            score = float("nan")
        if not np.isfinite(score):
            raise InputError(f"score {fields[4]!r} is not a finite number", path, lineno, field="score")
        scores.append(score)
        first.append(fields[5])
        second.append(fields[6])
    if not scores:
        raise InputError("no sentence pairs", path)
    return first, second, np.array(scores, np.float64)
