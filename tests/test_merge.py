"""`jaxretrieval merge`: two models opened through the door, averaged, exported; the export holds the NumPy
average of their parameters and loads back as the first model's kind."""

import numpy as np
import pytest

from hf_tiny import tiny_embedder_dir
from jaxretrieval.cli import main
from jaxretrieval.door import open_model
from jaxretrieval.errors import InputError
from jaxretrieval.merge import merge_models
from jaxretrieval.models.params import flat_params


def test_merge_exports_the_weighted_average(tmp_path):
    a, b = tiny_embedder_dir(tmp_path / "a", seed=1), tiny_embedder_dir(tmp_path / "b", seed=2)
    pa, pb = flat_params(open_model(str(a)).model), flat_params(open_model(str(b)).model)
    assert main(["merge", str(a), str(b), "--weights", "3,1", "--out", str(tmp_path / "m")]) == 0
    merged = flat_params(open_model(str(tmp_path / "m")).model)
    assert set(merged) == set(pa)
    for k in pa:
        np.testing.assert_allclose(merged[k], 0.75 * pa[k] + 0.25 * pb[k], rtol=1e-5, atol=1e-6)


def test_models_that_do_not_match_are_refused(tmp_path, capsys):
    a = tiny_embedder_dir(tmp_path / "a", seed=1)
    wide = tiny_embedder_dir(tmp_path / "w", seed=2, intermediate_size=48)
    with pytest.raises(InputError, match="has shape"):
        merge_models([str(a), str(wide)], None, str(tmp_path / "m"), "sentence-transformers")
    assert main(["merge", str(a), str(a), "--weights", "1", "--out", str(tmp_path / "m")]) == 2
    assert "1 weights for 2 models" in capsys.readouterr().err and not (tmp_path / "m").exists()
