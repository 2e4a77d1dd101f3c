"""Bundles carry their kind, the one spelling dispatching code looks at, and stay bundles of the same kind when
their model is replaced (as training does to evaluate its current parameters)."""

import dataclasses

import pytest

from hf_tiny import tiny_embedder_dir
from jaxretrieval.bundles import COLBERT, EMBEDDER, RERANKER, LoadedColBERT, LoadedEmbedder, LoadedReranker
from jaxretrieval.convert.st_format import load_embedder


def test_each_bundle_type_has_its_own_kind():
    assert (LoadedEmbedder.kind, LoadedColBERT.kind, LoadedReranker.kind) == (EMBEDDER, COLBERT, RERANKER)
    assert len({EMBEDDER, COLBERT, RERANKER}) == 3


def test_kind_is_not_a_field_and_survives_replace(tmp_path):
    loaded = load_embedder(tiny_embedder_dir(tmp_path / "m"))
    assert [f.name for f in dataclasses.fields(loaded)] == ["model", "tokenizer", "path", "trained", "backend"]
    assert loaded.backend is None  # the package's own forward unless an opener sets another engine
    other = dataclasses.replace(loaded, model=loaded.model)
    assert other.kind == EMBEDDER and other.tokenizer is loaded.tokenizer
    with pytest.raises(TypeError):
        LoadedEmbedder(loaded.model, loaded.tokenizer, loaded.path, "colbert")
