"""Training batches assembled from prepared records (data/shard_format.py), one batch of this process's records at a
time, for data/shard_stream.py. Each draw (a record's positive, its negatives, in-batch negatives) comes from a
generator seeded by (seed, epoch, process, batch index), so a batch is a pure function of its records and step.

The batches have the keys and shapes of the in-memory sources (data/pipeline.py, data/pair_groups.py,
data/text_batches.py), so a task's step cannot tell which one fed it; text ids are the 64-bit hashes folded to
int32 (data/text_ids.batch_id).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxretrieval.data.pair_tokens import PairTokenizer
from jaxretrieval.data.text_ids import batch_id
from jaxretrieval.data.tokenize import bucket_for, pad_ragged
from jaxretrieval.errors import InputError


def _features(raw: bytes):
    import tensorflow as tf

    return tf.train.Example.FromString(raw).features.feature


def _ints(f, key: str) -> np.ndarray:
    return np.asarray(f[key].int64_list.value, np.int64)


def _floats(f, key: str) -> np.ndarray:
    return np.asarray(f[key].float_list.value, np.float32)


def _split(tokens: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    return np.split(tokens, np.cumsum(lengths)[:-1]) if len(lengths) else []


def _rng(seed: int, epoch: int, process_index: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, process_index + 1, index])


def _draw_negatives(rng: np.random.Generator, available: int, count: int, source: str) -> np.ndarray:
    if not available:
        raise InputError("a prepared record has no negatives (prepare draws random ones unless the data holds a "
                         "single document)", source, field="neg")
    return rng.choice(available, count, replace=available < count)


@dataclasses.dataclass
class PairTokenBatches:
    """Dense and ColBERT batches from "pair_tokens" records: per record one positive, and num_negatives of its
    negatives (without replacement unless it has fewer); with_scores brings their teacher scores along."""

    num_negatives: int
    seed: int
    process_index: int
    pad_id: int
    query_pad_id: int  # ColBERT pads queries with its expansion token
    query_buckets: tuple[int, ...]  # padded lengths; one entry: fixed
    doc_buckets: tuple[int, ...]
    with_scores: bool
    source: str

    def __call__(self, raw: list[bytes], epoch: int, index: int) -> dict[str, np.ndarray]:
        rng = _rng(self.seed, epoch, self.process_index, index)
        n = self.num_negatives
        q_ids, q_seqs, p_ids, p_seqs, n_ids, n_seqs, p_scores, n_scores = [], [], [], [], [], [], [], []
        for r in raw:
            f = _features(r)
            q_ids.append(int(f["query_id"].int64_list.value[0]))
            q_seqs.append(_ints(f, "query_tokens"))
            pos_ids, neg_ids = _ints(f, "pos_ids"), _ints(f, "neg_ids")
            pos = _split(_ints(f, "pos_tokens"), _ints(f, "pos_lengths"))
            neg = _split(_ints(f, "neg_tokens"), _ints(f, "neg_lengths"))
            k = int(rng.integers(len(pos_ids)))
            p_ids.append(pos_ids[k])
            p_seqs.append(pos[k])
            picks = _draw_negatives(rng, len(neg_ids), n, self.source) if n else np.zeros(0, np.int64)
            n_ids.append(neg_ids[picks])
            n_seqs += [neg[j] for j in picks]
            if self.with_scores:
                p_scores.append(_floats(f, "pos_scores")[k])
                n_scores.append(_floats(f, "neg_scores")[picks])
        b = len(raw)
        q_len = bucket_for(max(len(s) for s in q_seqs), self.query_buckets)
        d_len = bucket_for(max(len(s) for s in p_seqs + n_seqs), self.doc_buckets)
        q_tok, q_mask = pad_ragged(q_seqs, b, q_len, self.query_pad_id)
        d_tok, d_mask = pad_ragged(p_seqs + n_seqs, b * (1 + n), d_len, self.pad_id)
        out = {"query_ids": q_tok, "query_mask": q_mask, "pos_ids": d_tok[:b], "pos_mask": d_mask[:b],
               "neg_ids": d_tok[b:].reshape(b, n, d_len), "neg_mask": d_mask[b:].reshape(b, n, d_len),
               "query_text": batch_id(q_ids), "pos_doc": batch_id(p_ids),
               "neg_doc": batch_id(np.array(n_ids, np.int64).reshape(b, n))}
        if self.with_scores:
            out.update(pos_score=np.array(p_scores, np.float32), neg_scores=np.array(n_scores, np.float32))
        return out


@dataclasses.dataclass
class PairTextBatches:
    """Reranker batches from "pair_texts" records: per query a group of a drawn positive and group_size − 1 of its
    negatives, plus in_batch_negatives documents of the other rows of this batch (never one of its positives, or of
    a row with the same query), tokenized as (query, document) pairs: ids / mask / types int32[B, G, L]."""

    tokenizer: PairTokenizer
    group_size: int
    in_batch_negatives: int
    scored: bool  # add "scores" float32[B, G]: the drawn documents' labels / teacher scores, 0 for in-batch ones
    seed: int
    process_index: int
    buckets: tuple[int, ...]
    source: str

    def __call__(self, raw: list[bytes], epoch: int, index: int) -> dict[str, np.ndarray]:
        rng = _rng(self.seed, epoch, self.process_index, index)
        queries, q_ids, positives, groups, texts, scores = [], [], [], [], [], []
        for r in raw:
            f = _features(r)
            queries.append(f["query_text"].bytes_list.value[0].decode("utf-8"))
            q_ids.append(int(f["query_id"].int64_list.value[0]))
            pos_ids, neg_ids = _ints(f, "pos_ids"), _ints(f, "neg_ids")
            pos_text, neg_text = list(f["pos_text"].bytes_list.value), list(f["neg_text"].bytes_list.value)
            positives.append(set(pos_ids.tolist()))
            k = int(rng.integers(len(pos_ids)))
            picks = (_draw_negatives(rng, len(neg_ids), self.group_size - 1, self.source) if self.group_size > 1
                     else np.zeros(0, np.int64))
            groups.append([int(pos_ids[k]), *neg_ids[picks].tolist()])
            texts.append([pos_text[k], *(neg_text[j] for j in picks)])
            if self.scored:
                scores.append([_floats(f, "pos_scores")[k], *_floats(f, "neg_scores")[picks]])
        b = len(raw)
        if self.in_batch_negatives:
            for i in range(b):
                own = set().union(*(positives[j] for j in range(b) if q_ids[j] == q_ids[i]))
                pool = [(d, t) for j in range(b) if j != i for d, t in zip(groups[j], texts[j]) if d not in own]
                if not pool:
                    raise InputError("in_batch_negatives: every other document of a batch is a positive of the "
                                     "same query; lower reranker.in_batch_negatives", self.source,
                                     field="reranker.in_batch_negatives")
                for j in rng.choice(len(pool), self.in_batch_negatives, replace=len(pool) < self.in_batch_negatives):
                    texts[i].append(pool[j][1])
                if self.scored:  # another query's document: label 0 (the bottom of the rescaled range)
                    scores[i] += [0.0] * self.in_batch_negatives
        g = len(texts[0])
        encoded = self.tokenizer.encode([q for q in queries for _ in range(g)],
                                        [t.decode("utf-8") for row in texts for t in row])
        length = bucket_for(max(len(x) for x in encoded["input_ids"]), self.buckets)
        enc = self.tokenizer.pad(encoded, length)
        out = {k: enc[k].reshape(b, g, length) for k in ("ids", "mask", "types")}
        if self.scored:
            out["scores"] = np.array(scores, np.float32)
        return out


@dataclasses.dataclass
class TextTokenBatches:
    """Distillation batches from "text_tokens" records: the student's tokens ids / mask int32[B, L] and each
    teacher's vectors teacher_vectors{k} float32[B, D_k]."""

    teachers: int
    pad_id: int
    buckets: tuple[int, ...]

    def __call__(self, raw: list[bytes], epoch: int, index: int) -> dict[str, np.ndarray]:
        seqs, vectors = [], [[] for _ in range(self.teachers)]
        for r in raw:
            f = _features(r)
            seqs.append(_ints(f, "tokens"))
            for k in range(self.teachers):
                vectors[k].append(_floats(f, f"teacher{k}"))
        length = bucket_for(max(len(s) for s in seqs), self.buckets)
        ids, mask = pad_ragged(seqs, len(raw), length, self.pad_id)
        return {"ids": ids, "mask": mask, **{f"teacher_vectors{k}": np.stack(v) for k, v in enumerate(vectors)}}
