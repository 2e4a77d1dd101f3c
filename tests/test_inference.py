"""encode_texts: rows in input order whatever the batching and padded lengths, and every Matryoshka output from one
pass with all_dims."""

import numpy as np
import pytest

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


@pytest.mark.parametrize("packed", [False, True])
def test_packed_or_padded_over_every_local_device_give_the_same_vectors(tmp_path, monkeypatch, packed):
    """Both layouts, with each batch's rows spread over the 8 simulated devices, give the one-text-at-a-time vectors;
    the batches really are split over all of them."""
    import jax

    from jaxretrieval import inference

    loaded = load_embedder(tiny_embedder_dir(tmp_path / "m"))
    alone = np.stack([encode_texts(loaded, [t], batch_size=1, packed=False)[0] for t in TEXTS * 3])
    seen = []
    real_put = jax.device_put
    monkeypatch.setattr(inference.jax, "device_put", lambda x, s=None: seen.append(s) or real_put(x, s))
    together = encode_texts(loaded, TEXTS * 3, batch_size=3, packed=packed)
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert jax.local_device_count() == 8 and seen
    assert all(s is not None and len(s.mesh.devices.reshape(-1)) == 8 for s in seen)
