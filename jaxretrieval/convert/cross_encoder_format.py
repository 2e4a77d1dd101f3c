"""Cross-encoder (reranker) directories in and out: build a CrossEncoder from any encoder directory (new or reused
head) or from an `AutoModelForSequenceClassification` directory, and export a directory that
`AutoModelForSequenceClassification` and `sentence_transformers.CrossEncoder` load (num_labels = 1).
"""

from __future__ import annotations

import os
from pathlib import Path

import flax.nnx as nnx
import numpy as np
from transformers import AutoTokenizer

from jaxretrieval.bundles import LoadedReranker
from jaxretrieval.convert.formats import read_json, save_safetensors, write_json
from jaxretrieval.convert.hf_format import family_of, hf_tensors, load_hf_encoder, read_hf_config, read_hf_weights
from jaxretrieval.convert.st_format import transformer_dir_of
from jaxretrieval.data.pair_tokens import PairTokenizer
from jaxretrieval.errors import InputError
from jaxretrieval.files import resolve_model_path
from jaxretrieval.models.families import FAMILIES
from jaxretrieval.models.params import flat_params, set_flat_params
from jaxretrieval.models.reranker import (ENCODER_PREFIX, HEAD_KINDS, HEAD_NAME_TABLE, SEQUENCE_CLASSIFICATION,
                                          CrossEncoder)


def load_reranker(path: str | os.PathLike, max_length: int = 512, query_format: str = "{}", doc_format: str = "{}",
                  special_token: str = "", seed: int = 0, dtype=None) -> LoadedReranker:
    """From a *ForSequenceClassification directory (its head), or any encoder directory (BERT's pretrained pooler
    when present, new classifier)."""
    root = transformer_dir_of(resolve_model_path(path))
    hf_config = read_hf_config(root)
    family = family_of(hf_config, root / "config.json")
    if family.name not in HEAD_KINDS:
        raise InputError(f"no reranker head for model_type {family.name!r}", root / "config.json", field="model_type")
    encoder, _ = load_hf_encoder(root) if dtype is None else load_hf_encoder(root, dtype=dtype)
    model = CrossEncoder(encoder, family.name, float(hf_config.get("hidden_dropout_prob", 0.1) or 0.0),
                         rngs=nnx.Rngs(seed))
    tensors = read_hf_weights(root)
    head = {}
    for ours, hf, transform in HEAD_NAME_TABLE[model.head_kind]:
        value = tensors.get(hf)
        if value is None and hf.startswith("bert.pooler."):  # a bare BertModel checkpoint keeps its pooler unprefixed
            value = tensors.get(hf.removeprefix("bert."))
        if value is not None:
            head[ours] = value.T if transform == "T" else value
    if head:
        set_flat_params(model, head)
    tok = AutoTokenizer.from_pretrained(str(root), use_fast=True)
    limit = min(max_length, int(hf_config.get("max_position_embeddings", max_length)))
    return LoadedReranker(model, PairTokenizer(tok, limit, query_format, doc_format, special_token,
                                               decoder=family.name == "qwen2"), root)


def write_cross_encoder(loaded: LoadedReranker, out: Path, dtype: str) -> None:
    """config.json (num_labels 1, the family's *ForSequenceClassification), model.safetensors, tokenizer."""
    hf_config = dict(read_hf_config(loaded.path))
    family = FAMILIES[hf_config["model_type"]]
    params = flat_params(loaded.model)
    encoder = {k.removeprefix("encoder."): v for k, v in params.items() if k.startswith("encoder.")}
    prefix = ENCODER_PREFIX[family.name]
    tensors = {prefix + k: v for k, v in hf_tensors(encoder, family).items()}
    for ours, hf, transform in HEAD_NAME_TABLE[loaded.model.head_kind]:
        value = params[ours]
        tensors[hf] = np.ascontiguousarray(value.T if transform == "T" else value)
    save_safetensors(out / "model.safetensors", tensors, dtype)
    hf_config.update(architectures=[SEQUENCE_CLASSIFICATION[family.name]], num_labels=1, id2label={"0": "LABEL_0"},
                     label2id={"LABEL_0": 0}, dtype=dtype)
    hf_config.pop("torch_dtype", None)
    if family.name == "qwen2" and hf_config.get("pad_token_id") is None:
        hf_config["pad_token_id"] = loaded.tokenizer.pad_id  # HF finds the last real token through it
    write_json(out / "config.json", hf_config)
    tok = loaded.tokenizer.tokenizer
    tok.model_max_length = loaded.tokenizer.max_length
    tok.save_pretrained(str(out))


def is_cross_encoder_dir(path: Path) -> bool:
    """An HF *ForSequenceClassification directory (a reranker), not a sentence-transformers embedder."""
    cfg = path / "config.json"
    if not cfg.exists() or (path / "modules.json").exists():
        return False
    return any(a.endswith("ForSequenceClassification") for a in read_json(cfg).get("architectures") or [])
