"""`prepare`'s writing side: a source read one chunk of records at a time, tokenized a chunk at a time, written
round-robin into TFRecord shards (data/shard_format.py), so memory depends on the chunk size and never on the
number of rows.

The only state kept across chunks is a fixed-size reservoir of documents seen so far: a record with no negatives
of its own (BEIR qrels, or mined data where every candidate was filtered) gets `random_negatives` documents drawn
from it, not among its positives, marked `neg_random`. In memory such records draw fresh random documents every
epoch; a stream cannot reach the whole corpus, so the draw is made once, here, from a uniform sample of the
documents before it (and in its own chunk).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import struct
from typing import Callable, Iterable, Iterator

import numpy as np

from jaxretrieval.data.shard_format import FORMAT, MANIFEST, SAMPLE
from jaxretrieval.data.text_ids import text_id
from jaxretrieval.data.train_pairs import PairRecord
from jaxretrieval.errors import InputError
from jaxretrieval.files import atomic_directory, require_free_output


SAMPLE_SIZE = 4096  # texts kept in sample.jsonl


@dataclasses.dataclass
class Tokenization:
    """How a task turns texts into the token ids it trains on, and what the reading side checks about it."""

    encode: Callable[[list[str], str], list[list[int]]]  # (texts, "query" | "doc") -> token ids per text
    fingerprint: str  # data/shard_format.tokenizer_fingerprint of the tokenizer and its settings
    settings: dict  # manifest entries the reader compares with its config (max lengths, pad ids)


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


class ShardWriter:
    """Round-robin shards in a local temporary directory that takes the place of `out` (local or gs://) only once
    the manifest is written, so an interrupted prepare leaves nothing that looks complete."""

    def __init__(self, out: str | os.PathLike, num_shards: int, overwrite: bool):
        if num_shards < 1:
            raise InputError(f"num_shards must be >= 1, got {num_shards}", out, field="shards")
        self.out = require_free_output(out, overwrite)
        self.num_shards = num_shards
        self.names = [f"train-{s:05d}-of-{num_shards:05d}.tfrecord" for s in range(num_shards)]
        self.counts = [0] * num_shards
        self.with_negatives = [0] * num_shards
        self.digest = hashlib.sha256()
        self.records = 0
        self.texts = DocReservoir(SAMPLE_SIZE, seed=0)  # what head_init=principal reads instead of every text
        self._writers = []

    def __enter__(self) -> "ShardWriter":
        import tensorflow as tf

        self._dir = atomic_directory(self.out)
        self.tmp = self._dir.__enter__()
        self._writers = [tf.io.TFRecordWriter(str(self.tmp / n)) for n in self.names]
        return self

    def write(self, example, ids: Iterable[int], has_negatives: bool, texts: Iterable[str] = ()) -> None:
        """One tf.train.Example; `ids` (its text ids) go into the dataset digest, `texts` into the text sample."""
        s = self.records % self.num_shards
        self._writers[s].write(example.SerializeToString())
        self.counts[s] += 1
        self.with_negatives[s] += bool(has_negatives)
        ids = list(ids)
        self.digest.update(struct.pack(f"<{len(ids) + 1}q", len(ids), *ids))
        self.records += 1
        for t in texts:
            self.texts.add(0, t)

    def finish(self, manifest: dict) -> dict:
        if not self.records:
            raise InputError("no records to prepare", manifest.get("source", self.out))
        self._close()
        full = {"format": FORMAT, **manifest, "examples": self.records, "digest": self.digest.hexdigest()[:32],
                "shards": [{"file": n, "examples": c, "with_negatives": w}
                           for n, c, w in zip(self.names, self.counts, self.with_negatives)]}
        with open(self.tmp / SAMPLE, "w", encoding="utf-8") as out:
            for text in self.texts.items:
                out.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
        (self.tmp / MANIFEST).write_text(json.dumps(full, indent=1))
        return full

    def _close(self) -> None:
        for w in self._writers:
            w.close()
        self._writers = []

    def __exit__(self, *exc):
        self._close()
        return self._dir.__exit__(*exc)


class DocReservoir:
    """A uniform sample (Algorithm R) of at most `size` documents of the stream so far: (text id, payload)."""

    def __init__(self, size: int, seed: int):
        self.size, self.rng, self.seen = size, np.random.default_rng(seed), 0
        self.ids: list[int] = []
        self.items: list = []

    def add(self, doc_id: int, item) -> None:
        self.seen += 1
        if len(self.ids) < self.size:
            self.ids.append(doc_id)
            self.items.append(item)
            return
        k = int(self.rng.integers(self.seen))
        if k < self.size:
            self.ids[k], self.items[k] = doc_id, item

    def draw(self, count: int, exclude: set[int]) -> list[tuple[int, object]]:
        """Up to `count` distinct documents of the sample whose ids are not in `exclude`."""
        out, taken = [], set(exclude)
        for k in self.rng.permutation(len(self.ids)):
            if self.ids[k] not in taken:
                taken.add(self.ids[k])
                out.append((self.ids[k], self.items[k]))
                if len(out) == count:
                    break
        return out


def _ints(feature, values) -> None:
    feature.int64_list.value.extend(values)  # Python ints (token ids, text ids)


def prepare_pairs(records: Iterable[PairRecord], out: str | os.PathLike, num_shards: int,
                  tokenization: Tokenization | None, source: str, overwrite: bool = False, chunk: int = 1024,
                  random_negatives: int = 16, seed: int = 0) -> dict:
    """Write {query, pos, neg[, scores]} records as shards: tokens (`tokenization` given: dense, ColBERT) or texts
    (None: the reranker, which tokenizes query and document together per batch). Returns the manifest."""
    import tensorflow as tf

    reservoir = DocReservoir(4096, seed)
    scored = None
    with ShardWriter(out, num_shards, overwrite) as writer:
        for part in _chunks(records, chunk):
            if scored is None:
                scored = part[0].scored
            docs = {t: None for r in part for t in (*r.pos, *r.neg)}  # distinct texts of the chunk, in order
            queries = {r.query: None for r in part}
            if tokenization is not None:
                docs = dict(zip(docs, tokenization.encode(list(docs), "doc")))
                queries = dict(zip(queries, tokenization.encode(list(queries), "query")))
            else:
                docs, queries = {t: t for t in docs}, {t: t for t in queries}
            doc_ids = {t: text_id(t) for t in docs}
            for t, item in docs.items():
                reservoir.add(doc_ids[t], item)
            for r in part:
                example = tf.train.Example()
                f = example.features.feature
                pos = [(doc_ids[t], docs[t]) for t in r.pos]
                neg = [(doc_ids[t], docs[t]) for t in r.neg]
                drawn = not neg and random_negatives > 0
                if drawn:
                    neg = reservoir.draw(random_negatives, {i for i, _ in pos})
                q_id = text_id(r.query)
                _ints(f["query_id"], [q_id])
                if tokenization is not None:
                    _ints(f["query_tokens"], queries[r.query])
                else:
                    f["query_text"].bytes_list.value.append(r.query.encode("utf-8"))
                for kind, group in (("pos", pos), ("neg", neg)):
                    _ints(f[f"{kind}_ids"], [i for i, _ in group])
                    if tokenization is not None:
                        _ints(f[f"{kind}_lengths"], [len(t) for _, t in group])
                        _ints(f[f"{kind}_tokens"], [x for _, t in group for x in t])
                    else:
                        f[f"{kind}_text"].bytes_list.value.extend(t.encode("utf-8") for _, t in group)
                if r.scored != scored:
                    raise InputError("some records have pos_scores/neg_scores and others do not (this record "
                                     "differs from the first)", source, r.lineno, field="pos_scores")
                if scored:
                    f["pos_scores"].float_list.value.extend(r.pos_scores.tolist())
                    f["neg_scores"].float_list.value.extend(r.neg_scores.tolist())
                _ints(f["neg_random"], [int(drawn)])
                writer.write(example, [q_id, *(i for i, _ in pos), *(i for i, _ in neg)], bool(r.neg),
                             [r.query, *r.pos, *r.neg])
        content = "pair_tokens" if tokenization is not None else "pair_texts"
        extra = {"tokenizer_fingerprint": tokenization.fingerprint, **tokenization.settings} if tokenization else {}
        return writer.finish({"content": content, "source": source, "scored": bool(scored), **extra})


def prepare_texts(texts: Iterable[tuple[int, str]], vectors: list[np.ndarray], teachers: list[str],
                  out: str | os.PathLike, num_shards: int, tokenization: Tokenization, source: str,
                  overwrite: bool = False, chunk: int = 1024) -> dict:
    """Write distillation texts as shards, each with its row of every teacher vector file (`vectors`: one
    float[N, D_k] per teacher, memory-mapped, aligned with the texts in order). Returns the manifest."""
    import tensorflow as tf

    rows = len(vectors[0]) if vectors else None
    with ShardWriter(out, num_shards, overwrite) as writer:
        for part in _chunks(texts, chunk):
            start = writer.records
            if rows is not None and start + len(part) > rows:
                raise InputError(f"more texts than the {rows} rows of the teacher vectors (one vector per text, in "
                                 f"order)", source, part[rows - start][0], field="distill.teacher_vectors")
            tokens = tokenization.encode([t for _, t in part], "doc")
            block = [np.asarray(v[start:start + len(part)], np.float32) for v in vectors]
            for k, v in enumerate(block):
                bad = ~np.isfinite(v).all(axis=1)
                if bad.any():
                    row = start + int(np.argmax(bad))
                    raise InputError(f"row {row} (0-based) is not finite (NaN or Inf): re-encode the teacher",
                                     teachers[k], field="distill.teacher_vectors")
            for j, ((_, text), ids) in enumerate(zip(part, tokens)):
                example = tf.train.Example()
                f = example.features.feature
                t_id = text_id(text)
                _ints(f["text_id"], [t_id])
                _ints(f["tokens"], ids)
                for k, v in enumerate(block):
                    f[f"teacher{k}"].float_list.value.extend(v[j].tolist())
                writer.write(example, [t_id], True, [text])
        if rows is not None and writer.records != rows:
            raise InputError(f"{rows} teacher vector rows, but {source} has {writer.records} texts (one vector per "
                             f"text, in order)", teachers[0], field="distill.teacher_vectors")
        return writer.finish({"content": "text_tokens", "source": source, "tokenizer_fingerprint":
                              tokenization.fingerprint, **tokenization.settings,
                              "teacher_dims": [int(v.shape[1]) for v in vectors],
                              "teachers": [os.path.basename(str(t).rstrip("/")) for t in teachers]})
