"""Registry of encoder families, keyed by Hugging Face `model_type`.

Adding a family is one new module (config dataclass, nnx encoder, HF name table) plus one line here.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from jaxretrieval.models import bert


@dataclasses.dataclass(frozen=True)
class Family:
    name: str
    config_from_hf: Callable[[dict[str, Any]], Any]
    encoder_cls: type
    hf_name_table: list[tuple[str, str, str]]
    hf_prefixes: tuple[str, ...]


FAMILIES: dict[str, Family] = {
    "bert": Family("bert", bert.BertConfig.from_hf, bert.BertEncoder, bert.HF_NAME_TABLE, bert.HF_PREFIXES),
}
