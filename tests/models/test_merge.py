"""Parameter averaging against NumPy, and the refusals that keep incompatible models from merging."""

import numpy as np
import pytest

from jaxretrieval.errors import InputError
from jaxretrieval.models.merge import average_params, normalized_weights


def _model(seed):
    rng = np.random.default_rng(seed)
    return {"encoder.w": rng.normal(size=(3, 4)).astype(np.float32), "head.b": rng.normal(size=4).astype(np.float32)}


def test_weighted_average_is_numpys():
    models = [_model(s) for s in range(3)]
    merged = average_params(models, [1, 2, 1])
    for k in models[0]:
        expected = np.average(np.stack([m[k].astype(np.float64) for m in models]), axis=0, weights=[1, 2, 1])
        np.testing.assert_allclose(merged[k], expected, rtol=1e-6)
        assert merged[k].dtype == np.float32
    uniform = average_params(models[:2])
    np.testing.assert_allclose(uniform["head.b"], (models[0]["head.b"] + models[1]["head.b"]) / 2, rtol=1e-6)
    assert normalized_weights([3, 1], 2) == [0.75, 0.25]
    same = average_params([models[0], models[0]], [0.3, 0.7])
    np.testing.assert_allclose(same["encoder.w"], models[0]["encoder.w"], rtol=1e-6)


def test_incompatible_models_are_refused():
    a, b = _model(0), _model(1)
    with pytest.raises(InputError, match="parameters differ"):
        average_params([a, {**b, "extra": np.zeros(1, np.float32)}], names=["A", "B"])
    with pytest.raises(InputError, match=r"B: parameter head.b has shape \(5,\)"):
        average_params([a, {**b, "head.b": np.zeros(5, np.float32)}], names=["A", "B"])
    with pytest.raises(InputError, match="2 weights for 3 models"):
        average_params([a, b, a], [1, 2])
    with pytest.raises(InputError, match="positive sum"):
        normalized_weights([0, 0], 2)
    with pytest.raises(InputError, match="at least two"):
        average_params([a])
