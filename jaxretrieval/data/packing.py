"""Packing: several tokenized texts per row, one after another, instead of one text per row padded to a bucket.

Padding is computed like real tokens, so a batch of short queries padded to a long bucket, or a batch whose texts
vary in length, spends much of its compute on nothing. Packed rows are filled best-fit (the longest text first,
then the longest that still fits the space left), which leaves a few tokens free per row at most. Every packed
batch of one stream has the same shape (rows × row length, and a fixed number of text slots), so a jitted forward
compiles once per stream. The model side (block-diagonal attention, per-text positions and pooling) is
models.embedder.Packing; this module only lays the tokens out.
"""

from __future__ import annotations

import bisect
import dataclasses
from typing import Iterator, Sequence

import numpy as np


def texts_per_row(row_length: int) -> int:
    """Text slots per row: room for texts of 8 tokens on average (and for 4 texts in any row), which rows of real
    texts seldom reach; the slots cost only a [slots, hidden] pooling output each."""
    return max(4, row_length // 8)


def pack_rows(lengths: Sequence[int], row_length: int, max_per_row: int) -> list[list[int]]:
    """Indices of the texts in each row, rows in the order they were opened (longest texts first). Deterministic:
    among texts of one length, the lowest index goes first. Lengths must be at most row_length."""
    if lengths and max(lengths) > row_length:
        raise ValueError(f"a text of {max(lengths)} tokens does not fit a row of {row_length}")
    by_length: dict[int, list[int]] = {}
    for i in reversed(range(len(lengths))):  # popping from the end then yields the lowest index first
        by_length.setdefault(int(lengths[i]), []).append(i)
    present = sorted(by_length)  # lengths that still have texts

    def take(limit: int) -> tuple[int, int] | None:
        j = bisect.bisect_right(present, limit) - 1
        if j < 0:
            return None
        length = present[j]
        index = by_length[length].pop()
        if not by_length[length]:
            present.pop(j)
        return length, index

    rows = []
    while present:
        length, index = take(row_length)
        row, free = [index], row_length - length
        while len(row) < max_per_row and (found := take(free)) is not None:
            row.append(found[1])
            free -= found[0]
        rows.append(row)
    return rows


@dataclasses.dataclass
class PackedBatch:
    """One batch of packed rows, with what models.embedder.Packing needs. Row arrays are int32[R, L]; first and
    last int32[N] flat token indices (row · L + column); index int64[N] maps text slots to input positions
    (-1 = an empty slot)."""

    input_ids: np.ndarray
    token_type_ids: np.ndarray
    segment_ids: np.ndarray
    token_text: np.ndarray
    first: np.ndarray
    last: np.ndarray
    index: np.ndarray

    @property
    def attention_mask(self) -> np.ndarray:
        return (self.segment_ids > 0).astype(np.int32)

    @property
    def real_tokens(self) -> int:
        return int((self.segment_ids > 0).sum())


def packed_batch(rows: Sequence[Sequence[int]], ids: Sequence[Sequence[int]], types: Sequence[Sequence[int]] | None,
                 num_rows: int, row_length: int, slots: int, pad_id: int, skip: int = 0,
                 slot_is_text: bool = False) -> PackedBatch:
    """Lay out `rows` (text indices per row, as pack_rows gives) into arrays of num_rows × row_length with `slots`
    text slots, filled in row order, or with slot_is_text text i in slot i (training: the vectors come out in
    the batch's own order). `skip` leading tokens of each text (a prompt excluded from pooling) are left out of
    its pooling."""
    shape = (num_rows, row_length)
    input_ids = np.full(shape, pad_id, np.int32)
    token_type_ids = np.zeros(shape, np.int32)
    segment_ids = np.zeros(shape, np.int32)
    token_text = np.full(shape, slots, np.int32)
    first, last = np.zeros(slots, np.int32), np.zeros(slots, np.int32)
    index = np.full(slots, -1, np.int64)
    slot = 0
    for r, row in enumerate(rows):
        start = 0
        for segment, text in enumerate(row, start=1):
            if slot_is_text:
                slot = text
            if slot >= slots:
                raise ValueError(f"text slot {slot} is past the batch's {slots} slots")
            seq = ids[text]
            end = start + len(seq)
            input_ids[r, start:end] = seq
            if types is not None:
                token_type_ids[r, start:end] = types[text]
            segment_ids[r, start:end] = segment
            pooled_from = min(start + skip, end)
            token_text[r, pooled_from:end] = slot
            first[slot] = r * row_length + min(pooled_from, max(end - 1, start))
            last[slot] = r * row_length + max(end - 1, start)
            index[slot] = text
            slot, start = slot + 1, end
    return PackedBatch(input_ids, token_type_ids, segment_ids, token_text, first, last, index)


def packed_batches(ids: Sequence[Sequence[int]], types: Sequence[Sequence[int]] | None, num_rows: int,
                   row_length: int, pad_id: int, skip: int = 0) -> Iterator[PackedBatch]:
    """Every text once, packed into batches of num_rows rows of row_length tokens; the last batch's unused rows
    and slots are padding. Texts longer than row_length must have been truncated before."""
    per_row = texts_per_row(row_length)
    rows = pack_rows([len(s) for s in ids], row_length, per_row)
    for start in range(0, len(rows), num_rows):
        yield packed_batch(rows[start:start + num_rows], ids, types, num_rows, row_length, num_rows * per_row,
                           pad_id, skip)


def packed_tokens(lengths: Sequence[int], num_rows: int, row_length: int) -> int:
    """Tokens computed by `packed_batches` (whole batches of num_rows rows)."""
    rows = len(pack_rows(lengths, row_length, texts_per_row(row_length)))
    return -(-rows // num_rows) * num_rows * row_length


def packed_stream(shares: Sequence[Sequence[Sequence[int]]], slots: Sequence[np.ndarray], row_length: int,
                  pad_id: int, process_index: int, row_multiple: int = 1, prefix: str = "",
                  types: Sequence[Sequence[Sequence[int]]] | None = None, token_columns: int = 0
                  ) -> dict[str, np.ndarray]:
    """One training stream of a global batch, packed for this process. shares[p] are the texts process p packs
    into its own rows; slots[p][j] is the slot (position in the stream's global vectors) of its text j; types,
    if given, their token type ids alike (then PREFIX + types is in the output too).

    Every process lays out every share, which makes it agree with the others on one row count (the most any
    share needs, rounded up to a multiple of an eighth of a share's texts and of row_multiple, the devices a
    process feeds, so a run meets a handful of shapes) and lets it supply its part of the global first/last
    arrays, which are in slot order and may point into other processes' rows. Flat token indices count the rows
    of all processes as one array, as the step sees them. Keys: PREFIX + ids, segments, token_text (int32[R, L]),
    first, last (int32[this process's part of the slots]); with token_columns, also PREFIX + tokens
    (int32[part, token_columns]: the flat index of each text's j-th token, -1 past its end)."""
    count = len(shares)
    local = len(shares[0])
    total = sum(len(s) for s in shares)
    layouts = [pack_rows([len(t) for t in share], row_length, max(1, len(share))) for share in shares]
    quantum = -(-max(1, local // 8) // row_multiple) * row_multiple
    num_rows = -(-max(len(layout) for layout in layouts) // quantum) * quantum
    first, last = np.zeros(total, np.int32), np.zeros(total, np.int32)
    mine = None
    for p, (share, layout, slot_ids) in enumerate(zip(shares, layouts, slots)):
        batch = packed_batch(layout, share, None if types is None else types[p], num_rows, row_length, len(share),
                             pad_id, slot_is_text=True)
        first[slot_ids] = batch.first + p * num_rows * row_length
        last[slot_ids] = batch.last + p * num_rows * row_length
        if p == process_index:
            mine = batch
            token_text = np.where(batch.token_text == len(share), total,
                                  np.asarray(slot_ids)[np.minimum(batch.token_text, len(share) - 1)])
    part = slice(process_index * total // count, (process_index + 1) * total // count)
    out = {prefix + "ids": mine.input_ids, prefix + "segments": mine.segment_ids,
           prefix + "token_text": token_text.astype(np.int32), prefix + "first": first[part],
           prefix + "last": last[part]}
    if types is not None:
        out[prefix + "types"] = mine.token_type_ids
    if token_columns:  # each text's tokens by position: what a multi-vector model reads its vectors back from
        lengths = last - first + 1
        column = np.arange(token_columns)
        tokens = np.where(column[None] < lengths[:, None], first[:, None] + column[None], -1).astype(np.int32)
        out[prefix + "tokens"] = tokens[part]
    return out
