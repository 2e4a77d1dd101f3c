"""(query, document) pairs to token ids for cross-encoders: the tokenizer's pair encoding for encoders, one
formatted sequence for decoder (LLM) rerankers."""

from __future__ import annotations

import dataclasses

import numpy as np


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
