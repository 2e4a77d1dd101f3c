"""ColBERT tokenization, token for token as PyLate does it, so exported models encode identically there:

- a marker token ([Q] / [D]) is inserted right after the first token ([CLS]); texts are truncated to
  length − 1 first so the marker fits;
- queries are padded to `query_length` with the mask token (query augmentation); the expansion tokens get vectors
  that take part in MaxSim, but are not attended to unless `attend_to_expansion_tokens`;
- documents keep their real tokens minus a skiplist (punctuation), padded per batch.

Markers are existing vocabulary tokens: ColBERT's `[unused0]` / `[unused1]` where the vocabulary has them (BERT
family), or the prefix strings themselves when they are single tokens of the vocabulary (an exported PyLate model).
"""

from __future__ import annotations

import dataclasses
import string

import numpy as np

from jaxretrieval.data.pipeline import TokenTable
from jaxretrieval.data.tokenize import TextTokenizer, length_buckets
from jaxretrieval.errors import InputError

_UNUSED = {"query": "[unused0]", "doc": "[unused1]"}


@dataclasses.dataclass
class ColBERTTokenizer:
    text: TextTokenizer
    query_length: int = 32
    doc_length: int = 180
    query_prefix: str = "[Q] "
    doc_prefix: str = "[D] "
    attend_to_expansion_tokens: bool = False
    use_skiplist: bool = True
    custom_skiplist: list[str] | None = None  # words to skip instead of punctuation (from a PyLate config)

    def __post_init__(self):
        hf = self.text.tokenizer
        self.marker_tokens = {"query": self._marker(self.query_prefix, "query"),
                              "doc": self._marker(self.doc_prefix, "doc")}
        self.marker_ids = {k: None if v is None else hf.convert_tokens_to_ids(v) for k, v in self.marker_tokens.items()}
        if hf.mask_token_id is not None:
            self.expansion_id = hf.mask_token_id
        elif hf.eos_token_id is not None:
            self.expansion_id = hf.eos_token_id
        else:
            self.expansion_id = self.text.pad_id
        if self.custom_skiplist is not None:
            self.skiplist_words = list(self.custom_skiplist)
        else:
            self.skiplist_words = list(string.punctuation) if self.use_skiplist else []
        # as PyLate: convert_tokens_to_ids, so a word missing from the vocabulary maps to (and skips) the unk id
        self.skiplist_ids = tuple(sorted({int(hf.convert_tokens_to_ids(w)) for w in self.skiplist_words}))

    def _marker(self, prefix: str, kind: str) -> str | None:
        """The vocabulary token that stands for `prefix` (None: no marker)."""
        if prefix == "":
            return None
        vocab = self.text.tokenizer.get_vocab()
        if prefix in vocab:
            return prefix
        if prefix.strip() in ("[Q]", "[D]") and _UNUSED[kind] in vocab:
            return _UNUSED[kind]
        raise InputError(f"the tokenizer has neither {prefix!r} nor {_UNUSED[kind]} as a token; set the "
                         f"{kind} prefix to an existing token or to '' (adding tokens is not supported)",
                         "config", field=f"colbert.{kind}_prefix")

    def token_ids(self, texts: list[str], kind: str) -> list[list[int]]:
        length = self.query_length if kind == "query" else self.doc_length
        marker = self.marker_ids[kind]
        ids = self.text.tokenize(texts, kind, length - 1 if marker is not None else length)["input_ids"]
        return [row[:1] + [marker] + row[1:] for row in ids] if marker is not None else ids

    def table(self, texts: list[str], kind: str, per_octave: int = 1) -> TokenTable:
        ids = self.token_ids(texts, kind)
        lengths = np.array([len(x) for x in ids], np.int64)
        flat = np.fromiter((t for row in ids for t in row), np.int32, count=int(lengths.sum()))
        length = self.query_length if kind == "query" else self.doc_length
        return TokenTable(flat, np.concatenate([[0], np.cumsum(lengths)]), length_buckets(length, per_octave))

    def query_masks(self, ids: np.ndarray, real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(attention mask, vector mask) of queries padded with the expansion token to query_length."""
        attention = np.ones_like(real) if self.attend_to_expansion_tokens else real
        return attention, np.ones_like(real)

    def doc_vector_mask(self, ids: np.ndarray, real: np.ndarray) -> np.ndarray:
        return (real.astype(bool) & ~np.isin(ids, self.skiplist_ids)).astype(np.int32)

    def encode_batch(self, texts: list[str], kind: str) -> dict[str, np.ndarray]:
        """Padded arrays for inference: ids, attention mask and vector mask, int32[B, L] (queries: L =
        query_length; documents: the longest in the batch)."""
        return self.pad_ids(self.token_ids(list(texts), kind), kind)

    def pad_ids(self, ids: list[list[int]], kind: str) -> dict[str, np.ndarray]:
        """`encode_batch` for token ids already made by `token_ids`."""
        length = self.query_length if kind == "query" else max(len(x) for x in ids)
        pad = self.expansion_id if kind == "query" else self.text.pad_id
        out = np.full((len(ids), length), pad, np.int32)
        real = np.zeros((len(ids), length), np.int32)
        for r, row in enumerate(ids):
            out[r, :len(row)] = row
            real[r, :len(row)] = 1
        if kind == "query":
            attention, vectors = self.query_masks(out, real)
        else:
            attention, vectors = real, self.doc_vector_mask(out, real)
        return {"ids": out, "attention": attention, "vectors": vectors}
