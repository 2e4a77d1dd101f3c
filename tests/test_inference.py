"""encode_texts: rows in input order whatever the batching and padded lengths, and every Matryoshka output from one
pass with all_dims."""

import numpy as np

from hf_tiny import tiny_embedder_dir
from jaxretrieval.convert.st_format import load_embedder
from jaxretrieval.inference import encode_texts
from jaxretrieval.models.embedder import with_heads

TEXTS = ["quick", "the lazy dog jumps over the quick brown fox again and again", "", "hello world", "fox"]


def test_rows_come_back_in_input_order_whatever_the_batches(tmp_path):
    loaded = load_embedder(tiny_embedder_dir(tmp_path / "m"))
    alone = np.stack([encode_texts(loaded, [t], batch_size=1)[0] for t in TEXTS])
    for batch_size, buckets in ((2, None), (3, (8, 16, 32)), (8, (32,))):
        together = encode_texts(loaded, TEXTS, batch_size=batch_size, buckets=buckets)
        assert together.shape == (len(TEXTS), loaded.model.dim) and together.dtype == np.float32
        np.testing.assert_allclose(together, alone, atol=1e-5)


def test_all_dims_returns_every_output_from_one_pass(tmp_path):
    loaded = load_embedder(tiny_embedder_dir(tmp_path / "m"))
    loaded.model = with_heads(loaded.model, matryoshka_dims=(8, 4))
    out = encode_texts(loaded, TEXTS, all_dims=True)
    assert sorted(out) == [4, 8, loaded.model.dim]
    np.testing.assert_allclose(out[loaded.model.dim], encode_texts(loaded, TEXTS), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out[4], axis=1), 1.0, rtol=1e-5)  # each head normalized
