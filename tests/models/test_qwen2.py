"""Qwen2 against transformers' PyTorch model from tiny random configs (fp32, last hidden state at real tokens
<= 1e-4, right and left padding, explicit head_dim, grouped-query and multi-head attention)."""

import numpy as np
import pytest

from hf_tiny import hidden_state_diff, padded_batch, tiny_family
from jaxretrieval.convert.hf_format import load_hf_encoder
from jaxretrieval.models.qwen2 import Qwen2Config


@pytest.mark.parametrize("left", [False, True], ids=["right_pad", "left_pad"])
def test_qwen2_matches_transformers(tmp_path, left):
    path = tiny_family(tmp_path / "qwen2", "qwen2", seed=5)
    ids, mask = padded_batch(np.random.default_rng(1), 0, length=19, left=left)
    assert hidden_state_diff(path, ids, mask) <= 1e-4


def test_qwen2_head_dim_and_mha(tmp_path):
    """Explicit head_dim (≠ hidden / heads) and num_key_value_heads == num_attention_heads."""
    path = tiny_family(tmp_path / "q", "qwen2", seed=6, num_key_value_heads=4, head_dim=8)
    ids, mask = padded_batch(np.random.default_rng(2), 0, length=11)
    assert hidden_state_diff(path, ids, mask) <= 1e-4


def test_qwen2_last_token_is_padding_invariant(tmp_path):
    """The same text right- or left-padded gives the same last-token state (rotary attention is shift-free)."""
    from jaxretrieval.models.embedder import last_token_index

    path = tiny_family(tmp_path / "q", "qwen2", seed=7)
    encoder, _ = load_hf_encoder(path)
    text = np.array([7, 9, 11, 13, 15], np.int32)
    right = np.zeros((1, 9), np.int32)
    right[0, :5] = text
    left = np.zeros((1, 9), np.int32)
    left[0, 4:] = text
    outs = []
    for ids in (right, left):
        mask = (np.arange(9)[None] < 5) if ids is right else (np.arange(9)[None] >= 4)
        mask = mask.astype(np.int32)
        hidden = np.asarray(encoder(ids, mask))
        outs.append(hidden[0, int(last_token_index(mask)[0])])
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-5)



def test_unsupported_rope_and_sliding_window_are_refused():
    base = {"vocab_size": 40, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 16}
    assert Qwen2Config.from_hf(base).num_key_value_heads == 2
    with pytest.raises(ValueError, match="rope type"):
        Qwen2Config.from_hf({**base, "rope_scaling": {"rope_type": "yarn"}})
    with pytest.raises(ValueError, match="sliding"):
        Qwen2Config.from_hf({**base, "use_sliding_window": True})
