"""Tokenization with the model directory's fast tokenizer, prompts, and batching by length.

Every batch is padded to one of a few fixed lengths ("buckets") and to a fixed number of rows, so a jit-compiled
forward sees only len(buckets) shapes however many texts go through it.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Iterator, Sequence

import jax
import numpy as np
from transformers import AutoTokenizer

from jaxretrieval.data.packing import PackedBatch, packed_batches, packed_tokens


def length_buckets(max_length: int, per_octave: int = 4, min_length: int = 16) -> tuple[int, ...]:
    """Padded lengths to use: about `per_octave` per doubling (≤ 1/per_octave padding waste), up to max_length."""
    out, length = [], min(min_length, max_length)
    while length < max_length:
        out.append(length)
        step = max(1, 2 ** int(math.log2(length)) // per_octave)
        length += step
    out.append(max_length)
    return tuple(out)


def inference_length_buckets(max_length: int) -> tuple[int, ...]:
    """Padded lengths for encoding and evaluation. On CPU a compile costs about a second and every padded token
    costs compute, so 4 lengths per doubling. On an accelerator compiling dominates and a padded token is nearly
    free, so 1 per doubling, as training uses: fewer than half the compiled shapes for about the same encoding
    time (benchmarks/encode_compile_time.py)."""
    return length_buckets(max_length, per_octave=4 if jax.default_backend() == "cpu" else 1)


def bucket_for(length: int, buckets: Sequence[int]) -> int:
    for b in buckets:
        if b >= length:
            return b
    return buckets[-1]


def pad_ragged(seqs: Sequence[Sequence[int]], rows: int, length: int, pad_value: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """int32 [rows, length] ids (each sequence left-aligned, `pad_value` after it and in rows past len(seqs)) and
    their 0/1 mask. The one padding routine for tokenized text, in eval batches and training batches alike."""
    ids = np.full((rows, length), pad_value, np.int32)
    mask = np.zeros((rows, length), np.int32)
    for r, seq in enumerate(seqs):
        ids[r, :len(seq)] = seq
        mask[r, :len(seq)] = 1
    return ids, mask


@dataclasses.dataclass
class TokenBatch:
    """One padded batch. Arrays are int32 [rows, length]; `index` maps rows back to input positions (-1 = pad row)."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    pool_mask: np.ndarray
    index: np.ndarray


def ensure_eos(tokenizer) -> None:
    """Make a Hugging Face fast tokenizer end every text with its EOS token (truncation keeps room for it), as
    last-token pooling needs: a decoder embedder (gte-Qwen2, Stella, Jasper) reads its vector off the EOS state, and
    a base decoder's tokenizer (Qwen2) appends none. Tokenizers that append it already are left alone. The change
    lives in the tokenizer's post-processor, which save_pretrained writes into tokenizer.json, so an export's
    sentence-transformers model tokenizes as training did. A tokenizer without an EOS token is left as it is."""
    eos = tokenizer.eos_token_id
    if eos is None:  # an encoder's tokenizer (BERT) ends each text with its own separator: pooled as it is
        return
    ends = lambda: (tokenizer("a")["input_ids"] or [None])[-1] == eos  # noqa: E731
    if ends():
        return
    tokenizer.add_eos_token = True  # transformers rebuilds the post-processor (bos as the tokenizer had it)
    if not ends():
        raise ValueError(f"could not make {type(tokenizer).__name__} append its EOS token")


class TextTokenizer:
    """Wraps a Hugging Face fast tokenizer with the embedder's max length, prompts and padding policy."""

    def __init__(self, model_dir: str | os.PathLike, max_length: int, query_prompt: str = "", doc_prompt: str = "",
                 include_prompt: bool = True, do_lower_case: bool = False, append_eos: bool = False):
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir), use_fast=True)
        if append_eos:
            ensure_eos(self.tokenizer)
        self.max_length = int(max_length)
        self.prompts = {"query": query_prompt or "", "doc": doc_prompt or ""}
        self.include_prompt = include_prompt
        self.do_lower_case = do_lower_case
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def prompt_length(self, kind: str) -> int:
        """Tokens the prompt occupies at the start of a sequence (special tokens included, trailing one not)."""
        prompt = self.prompts[kind]
        if not prompt:
            return 0
        ids = self.tokenizer(prompt, add_special_tokens=True)["input_ids"]
        if ids and ids[-1] in self.tokenizer.all_special_ids:
            return len(ids) - 1
        return len(ids)

    def tokenize(self, texts: Sequence[str], kind: str = "doc", max_length: int | None = None
                 ) -> dict[str, list[list[int]]]:
        """Truncated (to max_length, default the model's), unpadded token ids and token type ids for each text,
        with the kind's prompt prepended."""
        if kind not in self.prompts:
            raise ValueError(f"kind must be 'query' or 'doc', got {kind!r}")
        prompt = self.prompts[kind]
        texts = [prompt + t for t in texts] if prompt else list(texts)
        if self.do_lower_case:
            texts = [t.lower() for t in texts]
        enc = self.tokenizer(texts, truncation=True, max_length=max_length or self.max_length, padding=False,
                             return_attention_mask=False, return_token_type_ids=True)
        return {"input_ids": enc["input_ids"], "token_type_ids": enc.get("token_type_ids")}

    def encoded_batches(self, texts: Sequence[str], batch_size: int, kind: str = "doc",
                        buckets: Sequence[int] | None = None, packed: bool | None = None
                        ) -> Iterator[TokenBatch | PackedBatch]:
        """Texts tokenized once, then either packed several to a row (data/packing.py: batches of `batch_size`
        rows as long as the bucket of the longest text, one shape for the whole input) or sorted by length and
        padded per batch to a bucket (`batches`). packed=None picks packing only where it computes at least 10%
        fewer tokens: packing puts short texts into long rows, whose attention costs the row's length squared, so
        it pays where padding wastes much (mixed lengths, one bucket per octave), not where sorted buckets fit."""
        enc = self.tokenize(texts, kind)
        ids, types = enc["input_ids"], enc["token_type_ids"]
        buckets = tuple(buckets) if buckets else inference_length_buckets(self.max_length)
        skip = 0 if self.include_prompt else self.prompt_length(kind)
        lengths = [len(i) for i in ids]
        row_length = bucket_for(max(lengths, default=1), buckets)
        if packed is None:
            packed = packed_tokens(lengths, batch_size, row_length) <= 0.9 * padded_tokens(lengths, batch_size,
                                                                                          buckets)
        if packed:
            yield from packed_batches(ids, types, batch_size, row_length, self.pad_id, skip)
        else:
            yield from self._padded_batches(ids, types, batch_size, buckets, skip)

    def batches(self, texts: Sequence[str], batch_size: int, kind: str = "doc",
                buckets: Sequence[int] | None = None) -> Iterator[TokenBatch]:
        """Texts sorted by token length, cut into batches of `batch_size` rows, each padded to a bucket length."""
        enc = self.tokenize(texts, kind)
        buckets = tuple(buckets) if buckets else inference_length_buckets(self.max_length)
        skip = 0 if self.include_prompt else self.prompt_length(kind)
        yield from self._padded_batches(enc["input_ids"], enc["token_type_ids"], batch_size, buckets, skip)

    def _padded_batches(self, ids, types, batch_size: int, buckets: tuple[int, ...], skip: int
                        ) -> Iterator[TokenBatch]:
        order = sorted(range(len(ids)), key=lambda i: (len(ids[i]), i))
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            length = bucket_for(max(len(ids[i]) for i in rows), buckets)
            input_ids, attention_mask = pad_ragged([ids[i] for i in rows], batch_size, length, self.pad_id)
            token_type_ids = (pad_ragged([types[i] for i in rows], batch_size, length, 0)[0] if types is not None
                              else np.zeros_like(input_ids))
            pool_mask = attention_mask.copy()
            pool_mask[:, :skip] = 0
            index = np.full(batch_size, -1, np.int64)
            index[:len(rows)] = rows
            yield TokenBatch(input_ids, attention_mask, token_type_ids, pool_mask, index)


def padded_tokens(lengths: Sequence[int], batch_size: int, buckets: Sequence[int]) -> int:
    """Tokens computed by `TextTokenizer.batches` (sorted by length, each batch padded to its bucket)."""
    ordered = sorted(lengths)
    return sum(batch_size * bucket_for(max(ordered[s:s + batch_size]), buckets)
               for s in range(0, len(ordered), batch_size))
