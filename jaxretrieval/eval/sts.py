"""Semantic textual similarity: Spearman correlation between cosine similarities and gold scores, the figure
MTEB and sentence-transformers report for STS-B (× 100 in their tables; a fraction here)."""

from __future__ import annotations

import os

import numpy as np

from jaxretrieval.bundles import LoadedEmbedder
from jaxretrieval.data.sts_file import read_sts
from jaxretrieval.files import upath
from jaxretrieval.inference import encode_texts


def rank_average(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties sharing their average rank (as scipy.stats.rankdata)."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), np.float64)
    sorted_x = x[order]
    start = 0
    for end in range(1, len(x) + 1):
        if end == len(x) or sorted_x[end] != sorted_x[start]:
            ranks[order[start:end]] = (start + end + 1) / 2.0
            start = end
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = rank_average(np.asarray(a, np.float64)), rank_average(np.asarray(b, np.float64))
    return float(np.corrcoef(ra, rb)[0, 1])


def evaluate_sts(loaded: LoadedEmbedder, path: str | os.PathLike, batch_size: int = 64, all_dims: bool = False,
                 progress: bool = False) -> dict[str, float]:
    """{"sts_spearman": ...} for the main output, plus `dim<D>/sts_spearman` per Matryoshka dim with all_dims."""
    first, second, gold = read_sts(path)
    texts = list(dict.fromkeys(first + second))
    where = {t: i for i, t in enumerate(texts)}
    vectors = encode_texts(loaded, texts, "doc", batch_size, progress, desc=f"sts {upath(path).name}",
                           all_dims=all_dims)
    by_dim = vectors if all_dims else {loaded.model.dim: vectors}
    out = {}
    for dim, v in by_dim.items():
        v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        cos = np.sum(v[[where[t] for t in first]] * v[[where[t] for t in second]], axis=1)
        out["sts_spearman" if dim == loaded.model.dim else f"dim{dim}/sts_spearman"] = spearman(cos, gold)
    return out
