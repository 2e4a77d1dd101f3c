"""Embeddings from sentence-transformers directories match SentenceTransformer(dir).encode ≤ 1e-4."""


import numpy as np
import pytest

from hf_tiny import tiny_bert
from jaxretrieval.convert.st_format import load_embedder
from jaxretrieval.inference import encode_texts

TEXTS = ["hello world", "the quick brown fox jumps over the lazy dog", "fox", "dog " * 80, "a b c, d. e"]


def _save_st(tmp_path, pooling_mode, dense_out=None, normalize=True, prompts=None, include_prompt=True):
    import torch
    from sentence_transformers import SentenceTransformer, models

    hf = tiny_bert(tmp_path / "hf", seed=3)
    transformer = models.Transformer(str(hf), max_seq_length=24)
    mods = [transformer, models.Pooling(transformer.get_word_embedding_dimension(), pooling_mode=pooling_mode,
                                        include_prompt=include_prompt)]
    if dense_out:
        torch.manual_seed(0)
        mods.append(models.Dense(mods[-1].get_embedding_dimension(), dense_out,
                                 activation_function=torch.nn.Tanh()))
    if normalize:
        mods.append(models.Normalize())
    st = SentenceTransformer(modules=mods, device="cpu", prompts=prompts or {})
    out = tmp_path / "st"
    st.save(str(out))
    return out, st


@pytest.mark.parametrize("pooling_mode", ["mean", "cls", "max", "lasttoken", "mean_sqrt_len_tokens"])
def test_tiny_sentence_transformers_pooling_modes(tmp_path, pooling_mode):
    path, st = _save_st(tmp_path, pooling_mode, normalize=pooling_mode != "max")
    loaded = load_embedder(path)
    ours = encode_texts(loaded, TEXTS, batch_size=2)
    ref = st.encode(TEXTS, normalize_embeddings=False, convert_to_numpy=True)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= 1e-4


def test_dense_module_and_prompts(tmp_path):
    prompts = {"query": "query: ", "document": "passage: "}
    path, st = _save_st(tmp_path, "mean", dense_out=7, prompts=prompts, include_prompt=False)
    loaded = load_embedder(path)
    assert loaded.model.spec.query_prompt == "query: " and loaded.model.spec.doc_prompt == "passage: "
    assert loaded.model.dim == 7 and loaded.model.spec.normalize
    for kind, name in [("query", "query"), ("doc", "document")]:
        ours = encode_texts(loaded, TEXTS, kind=kind, batch_size=3)
        ref = st.encode(TEXTS, prompt_name=name, convert_to_numpy=True)
        assert np.abs(ours - ref).max() <= 1e-4


def test_plain_hf_directory_defaults_to_mean_pooling(tmp_path):
    path = tiny_bert(tmp_path / "hf", seed=4)
    loaded = load_embedder(path)
    spec = loaded.model.spec
    assert spec.pooling == ("mean",) and not spec.normalize and spec.max_length == 64
    assert load_embedder(path, pooling=("cls",)).model.spec.pooling == ("cls",)


def test_rows_come_back_in_input_order_across_buckets(tmp_path):
    path, _ = _save_st(tmp_path, "mean")
    loaded = load_embedder(path)
    together = encode_texts(loaded, TEXTS, batch_size=2)
    alone = np.stack([encode_texts(loaded, [t], batch_size=1)[0] for t in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_real_minilm_matches_sentence_transformers_with_truncation(minilm_dir):
    from sentence_transformers import SentenceTransformer

    long_text = " ".join(f"claim{i} evidence supports hypothesis" for i in range(200))  # ≫ 256 tokens
    texts = ["What causes anemia?", long_text, "Vitamin D deficiency is linked to bone loss.", "ok"]
    loaded = load_embedder(minilm_dir)
    assert loaded.model.spec.max_length == 256 and loaded.model.spec.normalize
    assert len(loaded.tokenizer.tokenize([long_text])["input_ids"][0]) == 256
    ours = encode_texts(loaded, texts, batch_size=4)
    ref = SentenceTransformer(str(minilm_dir), device="cpu").encode(texts, normalize_embeddings=True)
    assert np.abs(ours - ref).max() <= 1e-4
