"""PyLate directories in and out: a written directory reads back as the same ColBERT model and settings."""

import numpy as np
import pytest

from hf_tiny import tiny_bert
from jaxretrieval.config import ColBERTConfig
from jaxretrieval.convert.export import export
from jaxretrieval.convert.formats import read_json
from jaxretrieval.convert.pylate_format import is_pylate_dir, load_colbert
from jaxretrieval.models.params import flat_params


@pytest.mark.parametrize("projection", ["linear", "ffn"])
def test_written_directory_reads_back_identically(tmp_path, projection):
    cfg = ColBERTConfig(dim=8, projection=projection, query_length=12, doc_length=20, query_prefix="",
                        doc_prefix="", skiplist=False)
    model = load_colbert(tiny_bert(tmp_path / "hf"), cfg, seed=3)
    out = export(model, tmp_path / "pylate", fmt="pylate")
    assert is_pylate_dir(out) and not is_pylate_dir(tmp_path / "hf")
    st = read_json(out / "config_sentence_transformers.json")
    assert st["similarity_fn_name"] == "MaxSim" and st["query_length"] == 12 and st["document_length"] == 20
    again = load_colbert(out)
    assert again.model.spec.projection == projection and again.model.dim == 8
    assert again.tokenizer.query_length == 12 and again.tokenizer.skiplist_words == []
    a, b = flat_params(model.model), flat_params(again.model)
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-7)
