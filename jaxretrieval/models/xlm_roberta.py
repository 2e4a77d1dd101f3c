"""XLM-RoBERTa (and RoBERTa): BERT's architecture with positions offset by the padding index.

The base of bge-m3, multilingual-e5 and many multilingual embedders. Weights use BERT's names under a
`roberta.` prefix in task checkpoints; the encoder is bert.BertEncoder with `padding_position_idx` set.
"""

from __future__ import annotations

from typing import Any

from jaxretrieval.models.bert import HF_NAME_TABLE as BERT_NAME_TABLE
from jaxretrieval.models.bert import BertConfig


def config_from_hf(hf: dict[str, Any]) -> BertConfig:
    cfg = BertConfig.from_hf(hf)
    return BertConfig(**{**cfg.__dict__, "padding_position_idx": int(hf.get("pad_token_id", 1))})


HF_NAME_TABLE = BERT_NAME_TABLE
HF_PREFIXES = ("roberta.", "model.")
