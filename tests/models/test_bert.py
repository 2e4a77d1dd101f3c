"""BERT encoder parity against transformers' BertModel (fp32, last hidden state ≤ 1e-4), and the config options it
does not support refused by name."""

import numpy as np
import pytest
import torch

from hf_tiny import tiny_bert
from jaxretrieval.convert.hf_format import load_hf_encoder
from jaxretrieval.models.bert import BertConfig

SHAPES = [  # (layers, hidden, heads, intermediate, activation)
    dict(num_hidden_layers=1, hidden_size=12, num_attention_heads=3, intermediate_size=20, hidden_act="gelu"),
    dict(num_hidden_layers=2, hidden_size=35, num_attention_heads=5, intermediate_size=37, hidden_act="gelu_new"),
    dict(num_hidden_layers=3, hidden_size=28, num_attention_heads=7, intermediate_size=64, hidden_act="relu"),
]


def _random_batch(rng, vocab, batch, length):
    ids = rng.integers(5, vocab, size=(batch, length))
    lengths = rng.integers(1, length + 1, size=batch)
    lengths[0] = length
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int64)
    ids = np.where(mask == 1, ids, 0)
    types = (np.arange(length)[None, :] >= (lengths[:, None] // 2)).astype(np.int64) * mask
    return ids, mask, types


def _torch_hidden(path, ids, mask, types):
    from transformers import BertModel

    model = BertModel.from_pretrained(str(path), attn_implementation="eager").eval()
    with torch.no_grad():
        out = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                    token_type_ids=torch.tensor(types))
    return out.last_hidden_state.numpy()


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"L{s['num_hidden_layers']}H{s['hidden_size']}")
def test_tiny_random_bert_matches_transformers(tmp_path, shape):
    path = tiny_bert(tmp_path / "m", seed=shape["num_hidden_layers"], **shape)
    rng = np.random.default_rng(0)
    ids, mask, types = _random_batch(rng, 45, batch=4, length=13)
    encoder, _ = load_hf_encoder(path)
    ours = np.asarray(encoder(ids.astype(np.int32), mask.astype(np.int32), types.astype(np.int32)))
    ref = _torch_hidden(path, ids, mask, types)
    assert np.abs(ours - ref).max() <= 1e-4


def test_pytorch_model_bin_is_read_when_safetensors_absent(tmp_path):
    path = tiny_bert(tmp_path / "m", safetensors=False)
    assert (path / "pytorch_model.bin").exists() and not (path / "model.safetensors").exists()
    ids, mask, types = _random_batch(np.random.default_rng(1), 45, batch=2, length=9)
    encoder, _ = load_hf_encoder(path)
    ours = np.asarray(encoder(ids.astype(np.int32), mask.astype(np.int32), types.astype(np.int32)))
    assert np.abs(ours - _torch_hidden(path, ids, mask, types)).max() <= 1e-4


def test_real_minilm_hidden_state_matches_transformers(minilm_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(minilm_dir))
    texts = ["A short query.", "Scientific claims need evidence from abstracts " * 6, "x"]
    enc = tok(texts, padding=True, return_tensors="np")
    encoder, _ = load_hf_encoder(minilm_dir)
    ours = np.asarray(encoder(enc["input_ids"].astype(np.int32), enc["attention_mask"].astype(np.int32),
                              enc["token_type_ids"].astype(np.int32)))
    ref = _torch_hidden(minilm_dir, enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    assert np.abs(ours - ref).max() <= 1e-4


def test_relative_position_embeddings_are_refused():
    base = {"vocab_size": 40, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 16}
    assert BertConfig.from_hf({**base, "position_embedding_type": "absolute", "unknown_key": 1}).vocab_size == 40
    with pytest.raises(ValueError, match="relative_key"):
        BertConfig.from_hf({**base, "position_embedding_type": "relative_key"})
