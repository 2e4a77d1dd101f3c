"""The reranker's batches: each query's group (a sampled positive first, then group_size − 1 negatives, plus
optional in-batch negatives) tokenized as (query, document) pairs, flattened to [B·G, L] token arrays."""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxretrieval.data.packing import packed_stream
from jaxretrieval.data.pair_tokens import PairTokenizer
from jaxretrieval.data.pipeline import EpochCache
from jaxretrieval.data.tokenize import bucket_for, length_buckets
from jaxretrieval.data.train_pairs import TrainPairs, epoch_plan


@dataclasses.dataclass
class PairGroupSource:
    """This process's rows of each global batch: B queries x G pairs, flattened to [B·G, L] token arrays."""

    pairs: TrainPairs
    tokenizer: PairTokenizer
    global_batch: int
    group_size: int
    seed: int
    scored: bool  # labels / teacher scores available (pos_scores, neg_scores)
    in_batch_negatives: int = 0  # extra candidates per query: other queries' documents in the same batch
    process_index: int = 0
    process_count: int = 1
    packing: bool = False  # ids/segments/token_text/first/last/types packed rows (data/packing.py) + pair_slots [B, G]
    row_multiple: int = 1  # packed row counts are multiples of this (the devices one process feeds)
    plans: EpochCache = dataclasses.field(init=False, repr=False)  # epoch -> (queries, positives, negatives[, scores])

    def __post_init__(self):
        self.plans = EpochCache(lambda epoch: epoch_plan(self.pairs, self.seed, epoch, self.group_size - 1,
                                                          with_scores=self.scored))
        self.buckets = length_buckets(self.tokenizer.max_length, per_octave=1)
        self.positives_by_query: dict[int, set[int]] = {}  # query text id -> every positive it has anywhere in the data
        if self.in_batch_negatives:
            for q, pos in zip(self.pairs.query, self.pairs.positives):
                self.positives_by_query.setdefault(int(q), set()).update(int(d) for d in pos)

    def draw_in_batch_negatives(self, q: np.ndarray, docs: np.ndarray, epoch: int, index: int) -> np.ndarray:
        """int64[B, in_batch_negatives]: for each row, documents drawn from the *other* rows' candidates, never one
        of its own positives (queries that share a positive are common). Drawn from the global batch with a
        (seed, epoch, step) generator, so every process draws the same."""
        rng = np.random.default_rng([self.seed, epoch, index, 1])
        b = docs.shape[0]
        picks = np.zeros((b, self.in_batch_negatives), np.int64)
        for i in range(b):
            pool = np.concatenate([docs[:i], docs[i + 1:]]).reshape(-1)
            pool = pool[~np.isin(pool, list(self.positives_by_query[int(q[i])]))]
            if not len(pool):  # every other candidate is one of its positives: any non-positive document
                pool = np.setdiff1d(np.arange(len(self.pairs.doc_texts)), list(self.positives_by_query[int(q[i])]))
            picks[i] = rng.choice(pool, self.in_batch_negatives, replace=len(pool) < self.in_batch_negatives)
        return picks

    @property
    def steps_per_epoch(self) -> int:
        return len(self.pairs) // self.global_batch

    def fingerprint(self) -> dict:
        return {"examples": len(self.pairs), "docs": len(self.pairs.doc_texts), "source": self.pairs.source}

    def batch(self, step: int) -> dict[str, np.ndarray]:
        epoch, index = divmod(step, self.steps_per_epoch)
        rows = slice(index * self.global_batch, (index + 1) * self.global_batch)
        q, p, n, *scores = (x[rows] for x in self.plans(epoch))
        docs = np.concatenate([p[:, None], n], axis=1)  # [B, G]
        if self.in_batch_negatives:
            docs = np.concatenate([docs, self.draw_in_batch_negatives(q, docs, epoch, index)], axis=1)
        g = docs.shape[1]
        queries = [self.pairs.query_texts[i] for i in np.repeat(q, g)]
        texts = [self.pairs.doc_texts[i] for i in docs.reshape(-1)]
        # the padded length follows the global batch, so every process builds the same shape
        encoded = self.tokenizer.encode(queries, texts)  # once: the lengths and this process's rows come from it
        length = bucket_for(max(len(x) for x in encoded["input_ids"]), self.buckets)
        local = self.global_batch // self.process_count
        mine = slice(self.process_index * local, (self.process_index + 1) * local)
        flat = slice(mine.start * g, mine.stop * g)
        if self.packing:  # pairs packed several to a row, pair i of the global batch in slot i
            per = local * g
            ranges = [range(p * per, (p + 1) * per) for p in range(self.process_count)]
            out = packed_stream([[encoded["input_ids"][i] for i in r] for r in ranges],
                                [np.arange(r.start, r.stop) for r in ranges], self.buckets[-1],
                                self.tokenizer.pad_id, self.process_index, self.row_multiple,
                                types=[[encoded["token_type_ids"][i] for i in r] for r in ranges])
            out["pair_slots"] = np.arange(flat.start, flat.stop, dtype=np.int32).reshape(local, g)
        else:
            enc = self.tokenizer.pad({k: v[flat] for k, v in encoded.items()}, length)
            out = {"ids": enc["ids"].reshape(local, g, length), "mask": enc["mask"].reshape(local, g, length),
                   "types": enc["types"].reshape(local, g, length)}
        if scores:
            parts = [scores[0][mine, None], scores[1][mine]]
            if self.in_batch_negatives:  # another query's document: label 0 (the bottom of the rescaled range)
                parts.append(np.zeros((local, self.in_batch_negatives), np.float32))
            out["scores"] = np.concatenate(parts, axis=1).astype(np.float32)
        return out
