"""MPNet (all-mpnet-base-v2, our distillation teacher): a post-LN encoder like BERT, without token types, with
RoBERTa-style positions (pad index 1) and a bucketed relative position bias shared by every layer.

The encoder is bert.BertEncoder with those switches; this module holds the config translation and the
Hugging Face name table.
"""

from __future__ import annotations

from typing import Any

from jaxretrieval.models.bert import BertConfig

# HF MPNetEmbeddings hard-codes padding_idx = 1 and MPNetEncoder.compute_position_bias uses 32 buckets and a
# max distance of 128 whatever the config says; we follow the code, not the config.
_MPNET_PADDING_IDX = 1
_MPNET_BUCKETS = 32


def config_from_hf(hf: dict[str, Any]) -> BertConfig:
    cfg = BertConfig.from_hf({**hf, "type_vocab_size": 0})
    return BertConfig(**{**cfg.__dict__, "padding_position_idx": _MPNET_PADDING_IDX,
                         "relative_attention_buckets": _MPNET_BUCKETS, "relative_max_distance": 128})


_L = "encoder.layer.{i}."
_LINEARS = [("attention.attn.q", "query"), ("attention.attn.k", "key"), ("attention.attn.v", "value"),
            ("attention.attn.o", "attention_out"), ("intermediate.dense", "intermediate"), ("output.dense", "output")]
HF_NAME_TABLE: list[tuple[str, str, str]] = [
    ("embeddings.word_embeddings.weight", "embeddings.word_embeddings.embedding", ""),
    ("embeddings.position_embeddings.weight", "embeddings.position_embeddings.embedding", ""),
    ("embeddings.LayerNorm.weight", "embeddings.layer_norm.scale", ""),
    ("embeddings.LayerNorm.bias", "embeddings.layer_norm.bias", ""),
    ("encoder.relative_attention_bias.weight", "relative_attention_bias.embedding", ""),
] + [(_L + hf + ".weight", "layers.{i}." + ours + ".kernel", "T") for hf, ours in _LINEARS] + [
    (_L + hf + ".bias", "layers.{i}." + ours + ".bias", "") for hf, ours in _LINEARS
] + [
    (_L + "attention.LayerNorm.weight", "layers.{i}.attention_norm.scale", ""),
    (_L + "attention.LayerNorm.bias", "layers.{i}.attention_norm.bias", ""),
    (_L + "output.LayerNorm.weight", "layers.{i}.output_norm.scale", ""),
    (_L + "output.LayerNorm.bias", "layers.{i}.output_norm.bias", ""),
]
HF_PREFIXES = ("mpnet.", "model.")
