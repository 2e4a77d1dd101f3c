"""Training examples for retrieval: a query, its positives and its hard negatives, read from
(1) jsonl in the RAG-Retrieval / FlagEmbedding format `{"query", "pos": [...], "neg": [...], "prompt"?}` or
(2) a BEIR directory's qrels split (one example per judged (query, relevant document) row), or
(3) an STS-B style file: each pair scoring at least `min_score` is an example (sentence 1 -> sentence 2).
A source-wide `prompt` goes before every query without a prompt of its own (BEIR and STS queries have none).

Texts are deduplicated into two tables (queries, documents) and examples refer to them by index: the same
document text always has the same id, which is what lets the loss mask duplicate positives out of the negatives.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Iterator

import numpy as np

from jaxretrieval.data.beir import read_corpus, read_qrels, read_queries
from jaxretrieval.data.jsonl import iter_jsonl, require_str
from jaxretrieval.data.sts_file import is_sts_file, read_sts
from jaxretrieval.errors import InputError
from jaxretrieval.files import upath

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainPairs:
    query_texts: list[str]  # unique query texts (record prompt already prepended)
    doc_texts: list[str]  # unique document texts
    query: np.ndarray  # int64[E]: example → query text id
    positives: list[np.ndarray]  # per example, doc ids of its positives (≥ 1)
    negatives: list[np.ndarray]  # per example, doc ids of its hard negatives (may be empty)
    source: str
    # teacher scores aligned with positives / negatives (distillation data), or None when the file has none
    positive_scores: list[np.ndarray] | None = None
    negative_scores: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.query)

    def with_negatives_only(self) -> TrainPairs:
        """The records that have at least one negative. Score distillation needs a group to distribute over, and
        mining leaves some queries without negatives (all candidates filtered as likely false negatives); those
        are skipped with a warning naming how many and the first record, or an error when none is left."""
        keep = [i for i, neg in enumerate(self.negatives) if len(neg)]
        if len(keep) == len(self):
            return self
        if not keep:
            raise InputError("no record has negatives to distill from", self.source, field="neg")
        first = next(i for i, neg in enumerate(self.negatives) if not len(neg))
        log.warning("%s: %d of %d records have no negatives and are skipped for distillation (first: record %d)",
                    self.source, len(self) - len(keep), len(self), first + 1)
        pick = lambda xs: None if xs is None else [xs[i] for i in keep]
        return dataclasses.replace(self, query=self.query[keep], positives=pick(self.positives),
                                   negatives=pick(self.negatives), positive_scores=pick(self.positive_scores),
                                   negative_scores=pick(self.negative_scores))


class TextInterner:
    """Each distinct text once: text -> its row, in order of first appearance."""

    def __init__(self):
        self.ids: dict[str, int] = {}
        self.texts: list[str] = []

    def __call__(self, text: str) -> int:
        if text not in self.ids:
            self.ids[text] = len(self.texts)
            self.texts.append(text)
        return self.ids[text]


def _str_list(obj: dict, key: str, path, lineno: int, required: bool) -> list[str]:
    value = obj.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"field {key!r} must be a list of strings", path, lineno, field=key)
    if required and not value:
        raise InputError(f"field {key!r} is empty: every query needs at least one positive", path, lineno,
                         field=key)
    return value


def _scores(obj: dict, key: str, expected: int, path, lineno: int) -> np.ndarray | None:
    if key not in obj:
        return None
    value = obj[key]
    value = [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    if (not isinstance(value, list) or len(value) != expected
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise InputError(f"field {key!r} must be a list of {expected} numbers (one per {key.split('_')[0]} text)",
                         path, lineno, field=key)
    scores = np.array(value, np.float32)
    if not np.isfinite(scores).all():  # JSON readers accept NaN and Infinity; a teacher score must be a number
        raise InputError(f"field {key!r} holds a non-finite score ({value})", path, lineno, field=key)
    return scores


@dataclasses.dataclass
class PairRecord:
    """One training record as read, before any interning: what a streaming reader hands on."""

    query: str  # record prompt already prepended
    pos: list[str]
    neg: list[str]
    pos_scores: np.ndarray | None  # float32[len(pos)], or None when the record has none
    neg_scores: np.ndarray | None
    lineno: int  # 1-based line of the source (BEIR: the example's position)

    @property
    def scored(self) -> bool:
        return self.pos_scores is not None and self.neg_scores is not None


def iter_pair_records(path: str | os.PathLike, prompt: str = "") -> Iterator[PairRecord]:
    """The records of a {query, pos, neg, prompt?, pos_scores?, neg_scores?} jsonl file, one at a time, each
    checked. Either every record is scored or none: the first that differs from record 1 is an error. `prompt`
    goes before the queries of records without one."""
    default_prompt = prompt
    first_scored = None
    for lineno, obj in iter_jsonl(path):
        query = require_str(obj, "query", path, lineno, allow_empty=False)
        prompt = obj.get("prompt") or default_prompt
        if not isinstance(prompt, str):
            raise InputError("field 'prompt' must be a string", path, lineno, field="prompt")
        pos = _str_list(obj, "pos", path, lineno, True)
        neg = _str_list(obj, "neg", path, lineno, False)
        record = PairRecord(prompt + query, pos, neg, _scores(obj, "pos_scores", len(pos), path, lineno),
                            _scores(obj, "neg_scores", len(neg), path, lineno), lineno)
        if first_scored is None:
            first_scored = record.scored
        elif record.scored != first_scored:
            raise InputError("some records have pos_scores/neg_scores and others do not (this record differs from "
                             "the first)", path, lineno, field="pos_scores")
        yield record


def read_pairs_jsonl(path: str | os.PathLike, prompt: str = "") -> TrainPairs:
    queries, docs = TextInterner(), TextInterner()
    q_ids, pos, neg, pos_scores, neg_scores = [], [], [], [], []
    for r in iter_pair_records(path, prompt):
        q_ids.append(queries(r.query))
        pos.append(np.array([docs(t) for t in r.pos], np.int64))
        neg.append(np.array([docs(t) for t in r.neg], np.int64))
        pos_scores.append(r.pos_scores)
        neg_scores.append(r.neg_scores)
    if not q_ids:
        raise InputError("no training records", path)
    scored = pos_scores[0] is not None and neg_scores[0] is not None
    return TrainPairs(queries.texts, docs.texts, np.array(q_ids, np.int64), pos, neg, str(path),
                      pos_scores if scored else None, neg_scores if scored else None)


def read_pairs_beir(root: str | os.PathLike, split: str = "train", prompt: str = "") -> TrainPairs:
    d = upath(root)
    qrels_path = d / "qrels" / f"{split}.tsv"
    qrels = read_qrels(qrels_path)
    doc_ids, doc_texts = read_corpus(d / "corpus.jsonl")
    doc_index = {doc_id: i for i, doc_id in enumerate(doc_ids)}
    queries = read_queries(d / "queries.jsonl")
    q_intern = TextInterner()
    q_ids, pos = [], []
    for qid, judged in qrels.items():
        if qid not in queries:
            raise InputError(f"query id {qid!r} is not in queries.jsonl", qrels_path)
        for doc_id, rel in judged.items():
            if rel <= 0:
                continue
            if doc_id not in doc_index:
                raise InputError(f"corpus id {doc_id!r} is not in corpus.jsonl", qrels_path)
            q_ids.append(q_intern(prompt + queries[qid]))
            pos.append(np.array([doc_index[doc_id]], np.int64))
    if not q_ids:
        raise InputError("no relevant (score > 0) pairs", qrels_path)
    empty = np.zeros(0, np.int64)
    return TrainPairs(q_intern.texts, doc_texts, np.array(q_ids, np.int64), pos, [empty] * len(pos), str(d))


def read_pairs_sts(path: str | os.PathLike, min_score: float | None, prompt: str = "") -> TrainPairs:
    """The pairs of an STS-B style file that score at least min_score, as (sentence 1 -> sentence 2) examples
    without hard negatives: paraphrase pairs for in-batch contrastive training."""
    if min_score is None:
        raise InputError("an STS file as training data needs min_score (the gold score from which a pair is a "
                         "positive, e.g. 4 of 5)", path, field="min_score")
    first, second, scores = read_sts(path)
    queries, docs = TextInterner(), TextInterner()
    q_ids, pos = [], []
    for a, b, score in zip(first, second, scores):
        if score >= min_score:
            q_ids.append(queries(prompt + a))
            pos.append(np.array([docs(b)], np.int64))
    if not q_ids:
        raise InputError(f"no pair scores at least min_score {min_score}", path, field="min_score")
    empty = np.zeros(0, np.int64)
    return TrainPairs(queries.texts, docs.texts, np.array(q_ids, np.int64), pos, [empty] * len(pos), str(path))


def pair_records(pairs: TrainPairs) -> Iterator[PairRecord]:
    """The records of pairs already read (a BEIR directory is joined in memory, its corpus read whole)."""
    for i in range(len(pairs)):
        pick = lambda scores: None if scores is None else scores[i]  # noqa: E731
        yield PairRecord(pairs.query_texts[int(pairs.query[i])], [pairs.doc_texts[j] for j in pairs.positives[i]],
                         [pairs.doc_texts[j] for j in pairs.negatives[i]], pick(pairs.positive_scores),
                         pick(pairs.negative_scores), i + 1)


def iter_train_records(source: str | os.PathLike, split: str = "train", prompt: str = "",
                       min_score: float | None = None) -> Iterator[PairRecord]:
    """Records of a jsonl file, streamed, or of a BEIR directory's qrels split or an STS file, read whole."""
    p = upath(source)
    if p.suffix == ".jsonl" and not p.is_dir():
        _no_min_score(p, min_score)
        return iter_pair_records(p, prompt)
    return pair_records(read_train_pairs(p, split, prompt, min_score))


def read_train_pairs(source: str | os.PathLike, split: str = "train", prompt: str = "",
                     min_score: float | None = None) -> TrainPairs:
    p = upath(source)
    if is_sts_file(p) and p.is_file():
        return read_pairs_sts(p, min_score, prompt)
    _no_min_score(p, min_score)
    if p.is_dir():
        return read_pairs_beir(p, split, prompt)
    if p.suffix == ".jsonl":
        return read_pairs_jsonl(p, prompt)
    if not p.exists():
        raise InputError("training data not found", p)
    raise InputError("training data must be a .jsonl file, a BEIR directory or an STS file (.csv, .tsv)", p)


def _no_min_score(path, min_score: float | None) -> None:
    if min_score is not None:
        raise InputError("min_score is for STS files (.csv, .tsv); this source has its own positives", path,
                         field="min_score")


def epoch_plan(pairs: TrainPairs, seed: int, epoch: int, num_negatives: int, num_docs: int | None = None,
               with_scores: bool = False) -> tuple[np.ndarray, ...]:
    """The epoch's example order and sampled documents, a pure function of (seed, epoch).

    Returns query ids int64[E], positive doc ids int64[E] (one positive drawn per example) and negative doc ids
    int64[E, num_negatives]: drawn without replacement from the example's hard negatives, with replacement only
    when it has fewer than needed, and from random non-positive documents when it has none.
    with_scores adds the teacher scores of the drawn positive float32[E] and negatives float32[E, num_negatives]
    (the file's pos_scores / neg_scores; every example then needs num_negatives hard negatives of its own).
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(pairs))
    query = pairs.query[order]
    if with_scores:
        return (query, *_scored_draws(pairs, order, rng, num_negatives))
    positive = np.array([rng.choice(pairs.positives[i]) for i in order], np.int64)
    negative = np.zeros((len(order), num_negatives), np.int64)
    if num_negatives:
        num_docs = len(pairs.doc_texts) if num_docs is None else num_docs
        for row, i in enumerate(order):
            hard = pairs.negatives[i]
            if len(hard):
                negative[row] = rng.choice(hard, num_negatives, replace=len(hard) < num_negatives)
            else:  # no hard negatives given: random documents that are not among its positives
                candidates = rng.choice(num_docs, 4 * num_negatives + len(pairs.positives[i]))
                candidates = candidates[~np.isin(candidates, pairs.positives[i])]
                negative[row] = np.resize(candidates if len(candidates) else rng.choice(num_docs, 1), num_negatives)
    return query, positive, negative


def _scored_draws(pairs: TrainPairs, order: np.ndarray, rng: np.random.Generator, num_negatives: int):
    """Positive and negatives drawn by position, so their teacher scores come along."""
    pos, neg = np.zeros(len(order), np.int64), np.zeros((len(order), num_negatives), np.int64)
    pos_s, neg_s = np.zeros(len(order), np.float32), np.zeros((len(order), num_negatives), np.float32)
    for row, i in enumerate(order):
        k = rng.integers(len(pairs.positives[i]))
        pos[row], pos_s[row] = pairs.positives[i][k], pairs.positive_scores[i][k]
        hard = pairs.negatives[i]
        if num_negatives:
            if not len(hard):
                raise InputError(f"record {i + 1} has no negatives to distill from", pairs.source, i + 1,
                                 field="neg")
            picks = rng.choice(len(hard), num_negatives, replace=len(hard) < num_negatives)
            neg[row], neg_s[row] = hard[picks], pairs.negative_scores[i][picks]
    return pos, neg, pos_s, neg_s
