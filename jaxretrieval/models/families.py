"""Registry of encoder families, keyed by Hugging Face `model_type`.

Adding a family is one new module (config dataclass, nnx encoder, HF name table) plus one line here.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from jaxretrieval.models import bert, mpnet, qwen2, xlm_roberta


@dataclasses.dataclass(frozen=True)
class Family:
    name: str
    config_from_hf: Callable[[dict[str, Any]], Any]
    encoder_cls: type
    hf_name_table: list[tuple[str, str, str]]
    hf_prefixes: tuple[str, ...]


FAMILIES: dict[str, Family] = {
    "bert": Family("bert", bert.BertConfig.from_hf, bert.BertEncoder, bert.HF_NAME_TABLE, bert.HF_PREFIXES),
    "xlm-roberta": Family("xlm-roberta", xlm_roberta.config_from_hf, bert.BertEncoder, xlm_roberta.HF_NAME_TABLE,
                          xlm_roberta.HF_PREFIXES),
    "roberta": Family("roberta", xlm_roberta.config_from_hf, bert.BertEncoder, xlm_roberta.HF_NAME_TABLE,
                      xlm_roberta.HF_PREFIXES),
    "mpnet": Family("mpnet", mpnet.config_from_hf, bert.BertEncoder, mpnet.HF_NAME_TABLE, mpnet.HF_PREFIXES),
    "qwen2": Family("qwen2", qwen2.Qwen2Config.from_hf, qwen2.Qwen2Encoder, qwen2.HF_NAME_TABLE,
                    qwen2.HF_PREFIXES),
}
