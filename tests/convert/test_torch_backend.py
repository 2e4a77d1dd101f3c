"""The torch backend computes an embedder's vectors through its sentence-transformers export: the same vectors as
our forward in float32, close ones in bfloat16, prompts applied as ours apply them, and what it cannot serve
refused by name."""

import dataclasses

import numpy as np
import pytest

from hf_tiny import make_sentence_transformers_dir, tiny_embedder_dir
from jaxretrieval.convert.st_format import load_embedder
from jaxretrieval.convert.torch_backend import TorchEmbedder
from jaxretrieval.errors import InputError
from jaxretrieval.inference import encode_texts
from jaxretrieval.models.embedder import with_heads

TEXTS = ["hello world", "quick brown fox jumps over the lazy dog", "fox", "lazy"]


def test_float32_vectors_match_ours_and_bfloat16_stay_close(tmp_path):
    loaded = load_embedder(tiny_embedder_dir(tmp_path / "m"))
    ours = encode_texts(loaded, TEXTS)
    backend = TorchEmbedder(loaded)
    np.testing.assert_allclose(backend.encode(TEXTS), ours, atol=1e-5)
    through = encode_texts(dataclasses.replace(loaded, backend=backend), TEXTS)  # encode_texts hands over to it
    np.testing.assert_allclose(through, ours, atol=1e-5)
    bf16 = TorchEmbedder(loaded, "bfloat16").encode(TEXTS)
    assert bf16.dtype == np.float32 and (bf16 * ours).sum(axis=1).min() > 0.99


def test_prompts_are_applied_as_ours_apply_them(tmp_path):
    path = tiny_embedder_dir(tmp_path / "m")
    make_sentence_transformers_dir(path, {"pooling_mode_mean_tokens": True}, normalize=True,
                                   prompts={"query": "query: ", "document": "passage: "})
    loaded = load_embedder(path)
    backend = TorchEmbedder(loaded)
    for kind in ("query", "doc"):
        np.testing.assert_allclose(backend.encode(TEXTS, kind), encode_texts(loaded, TEXTS, kind), atol=1e-5)


def test_what_it_cannot_serve_is_refused(tmp_path):
    loaded = load_embedder(tiny_embedder_dir(tmp_path / "m"))
    loaded.model = with_heads(loaded.model, matryoshka_dims=(8,))
    with pytest.raises(InputError, match="--backend"):
        TorchEmbedder(loaded)
