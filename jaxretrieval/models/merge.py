"""Model merging as a weighted average of parameters: the guard against a fine-tune that forgets what its base
knew (averaging a fine-tune with its base, or several runs with each other, in the manner of model soups and
FlagEmbedding's LM-Cocktail's uniform form). A pure function of flat parameter dicts, so it is tested against
NumPy directly and applies to any family and head the flat names cover."""

from __future__ import annotations

import numpy as np

from jaxretrieval.errors import InputError


def normalized_weights(weights: list[float] | None, count: int, where: str = "--weights") -> list[float]:
    """`weights` scaled to sum to 1 (equal weights when None); a wrong count or a negative sum is an InputError."""
    if weights is None or not len(weights):
        return [1.0 / count] * count
    if len(weights) != count:
        raise InputError(f"{len(weights)} weights for {count} models", where, field="weights")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise InputError(f"weights must be >= 0 with a positive sum, got {list(weights)}", where, field="weights")
    total = float(sum(weights))
    return [float(w) / total for w in weights]


def average_params(models: list[dict[str, np.ndarray]], weights: list[float] | None = None,
                   names: list[str] | None = None) -> dict[str, np.ndarray]:
    """sum_i w_i * params_i per parameter, the w_i normalized to sum to 1, accumulated in float64 and returned in
    the first model's dtypes. Every model must have the same parameter names and shapes (`names` label them in
    the error); integer parameters (none in today's families) must be equal and are kept."""
    names = names or [f"model {i + 1}" for i in range(len(models))]
    if len(models) < 2:
        raise InputError("merging needs at least two models", "command line")
    w = normalized_weights(weights, len(models))
    first = models[0]
    for name, params in zip(names[1:], models[1:]):
        if set(params) != set(first):
            diff = sorted(set(params) ^ set(first))
            raise InputError(f"its parameters differ from {names[0]}'s ({len(diff)} names, e.g. {diff[:3]}): "
                             f"only models of one architecture and head merge", name)
        bad = [k for k in first if params[k].shape != first[k].shape]
        if bad:
            raise InputError(f"parameter {bad[0]} has shape {params[bad[0]].shape}, {names[0]}'s has "
                             f"{first[bad[0]].shape}", name)
    out = {}
    for k, ref in first.items():
        if ref.dtype.kind != "f":
            if any(not np.array_equal(m[k], ref) for m in models[1:]):
                raise InputError(f"integer parameter {k} differs between the models", names[0])
            out[k] = ref
            continue
        acc = np.zeros(ref.shape, np.float64)
        for wi, m in zip(w, models):
            acc += wi * np.asarray(m[k], np.float64)
        out[k] = acc.astype(ref.dtype)
    return out
