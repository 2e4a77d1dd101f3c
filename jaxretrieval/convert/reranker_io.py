"""Rerankers in and out: build a CrossEncoder from any encoder directory (new or reused head) or from an
`AutoModelForSequenceClassification` directory, tokenize (query, document) pairs, and export a directory that
`AutoModelForSequenceClassification` and `sentence_transformers.CrossEncoder` load (num_labels = 1).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from jaxretrieval.convert.hf_import import family_of, load_hf_encoder, read_hf_config, read_hf_weights
from jaxretrieval.convert.st_import import resolve_model_path, transformer_dir_of
from jaxretrieval.errors import InputError
from jaxretrieval.models.params import flat_params, set_flat_params
from jaxretrieval.models.reranker import (ENCODER_PREFIX, HEAD_KINDS, HEAD_NAME_TABLE, SEQUENCE_CLASSIFICATION,
                                          CrossEncoder)


@dataclasses.dataclass
class PairTokenizer:
    """(query, document) → token ids. Encoders: the tokenizer's pair encoding (segment ids), truncating the
    document only. Decoders (LLM rerankers): one sequence query_format(q) + doc_format(d) + special_token."""

    tokenizer: object  # Hugging Face fast tokenizer
    max_length: int = 512
    query_format: str = "{}"
    doc_format: str = "{}"
    special_token: str = ""  # decoders: appended, its last hidden state is scored
    decoder: bool = False

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def encode(self, queries: list[str], docs: list[str]) -> dict[str, list[list[int]]]:
        q = [self.query_format.format(x) for x in queries]
        d = [self.doc_format.format(x) for x in docs]
        if self.decoder:
            enc = self.tokenizer([a + b + self.special_token for a, b in zip(q, d)], truncation=True,
                                 max_length=self.max_length, return_token_type_ids=False)
            return {"input_ids": enc["input_ids"], "token_type_ids": [[0] * len(x) for x in enc["input_ids"]]}
        enc = self.tokenizer(q, d, truncation="only_second", max_length=self.max_length, return_token_type_ids=True)
        types = enc.get("token_type_ids") or [[0] * len(x) for x in enc["input_ids"]]
        return {"input_ids": enc["input_ids"], "token_type_ids": types}

    def batch(self, queries: list[str], docs: list[str], length: int | None = None,
              rows: int | None = None) -> dict[str, np.ndarray]:
        """Right-padded int32 arrays ids / mask / types [rows, length] (defaults: the pairs' count and longest)."""
        return self.pad(self.encode(queries, docs), length, rows)

    def pad(self, enc: dict[str, list[list[int]]], length: int | None = None,
            rows: int | None = None) -> dict[str, np.ndarray]:
        """`batch` for pairs already run through `encode` (callers that needed the lengths first)."""
        ids, types = enc["input_ids"], enc["token_type_ids"]
        length = length or max(len(x) for x in ids)
        rows = rows or len(ids)
        out = {k: np.zeros((rows, length), np.int32) for k in ("ids", "mask", "types")}
        out["ids"][:] = self.pad_id
        for r, (x, t) in enumerate(zip(ids, types)):
            x, t = x[:length], t[:length]
            out["ids"][r, :len(x)], out["types"][r, :len(t)], out["mask"][r, :len(x)] = x, t, 1
        return out


@dataclasses.dataclass
class LoadedReranker:
    model: CrossEncoder
    tokenizer: PairTokenizer
    path: Path  # directory of the encoder's config.json


def load_reranker(path: str | os.PathLike, max_length: int = 512, query_format: str = "{}", doc_format: str = "{}",
                  special_token: str = "", seed: int = 0, dtype=None) -> LoadedReranker:
    """From a *ForSequenceClassification directory (its head), or any encoder directory (BERT's pretrained pooler
    when present, new classifier)."""
    import flax.nnx as nnx
    from transformers import AutoTokenizer

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
    for ours, hf, transform in HEAD_NAME_TABLE[model.kind]:
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
    from jaxretrieval.convert.export import _cast, _save_safetensors, _write_json, hf_tensors
    from jaxretrieval.models.families import FAMILIES

    hf_config = dict(read_hf_config(loaded.path))
    family = FAMILIES[hf_config["model_type"]]
    params = flat_params(loaded.model)
    encoder = {k.removeprefix("encoder."): v for k, v in params.items() if k.startswith("encoder.")}
    prefix = ENCODER_PREFIX[family.name]
    tensors = {prefix + k: v for k, v in hf_tensors(encoder, family).items()}
    for ours, hf, transform in HEAD_NAME_TABLE[loaded.model.kind]:
        value = params[ours]
        tensors[hf] = np.ascontiguousarray(value.T if transform == "T" else value)
    _save_safetensors(out / "model.safetensors", _cast(tensors, dtype))
    hf_config.update(architectures=[SEQUENCE_CLASSIFICATION[family.name]], num_labels=1, id2label={"0": "LABEL_0"},
                     label2id={"LABEL_0": 0}, dtype=dtype)
    hf_config.pop("torch_dtype", None)
    if family.name == "qwen2" and hf_config.get("pad_token_id") is None:
        hf_config["pad_token_id"] = loaded.tokenizer.pad_id  # HF finds the last real token through it
    _write_json(out / "config.json", hf_config)
    tok = loaded.tokenizer.tokenizer
    tok.model_max_length = loaded.tokenizer.max_length
    tok.save_pretrained(str(out))
