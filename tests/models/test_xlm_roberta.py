"""XLM-RoBERTa / RoBERTa against transformers' PyTorch model from a tiny random config (fp32, last hidden state at
real tokens <= 1e-4, padded batches), and positions counted from the pad index as RoBERTa counts them."""

import numpy as np

from hf_tiny import hidden_state_diff, padded_batch, tiny_family
from jaxretrieval.models.xlm_roberta import config_from_hf


def test_xlm_roberta_matches_transformers(tmp_path):
    path = tiny_family(tmp_path / "xlmr", "xlm-roberta", seed=3)
    ids, mask = padded_batch(np.random.default_rng(0), 1, length=21)
    assert hidden_state_diff(path, ids, mask) <= 1e-4


def test_positions_start_after_the_pad_index():
    cfg = config_from_hf({"vocab_size": 40, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
                          "intermediate_size": 16, "pad_token_id": 1})
    assert cfg.padding_position_idx == 1
