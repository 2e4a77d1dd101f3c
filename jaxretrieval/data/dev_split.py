"""The dev split: queries carved out of the training data, evaluated to make every choice (best step, learning
rate, loss weights, data mix) while the test split stays unseen until one final evaluation.

A query is in dev by a hash of its id (BEIR) alone, never by its position or a random draw, so the same queries are
held out on every run, host and process count, and a dataset that grows keeps its old dev queries. `size` is a
fraction of the queries (0 < size < 1: those whose hash falls below it) or a count (>= 1: the `size` smallest
hashes). The held-out queries' texts are then dropped from every training source, whatever its format: a
jsonl or mixture that repeats a dev query (with or without a prompt before it) must not train on it either.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from typing import Any, Iterable

from jaxretrieval.data.beir import BeirSplit, load_beir, read_qrels, read_queries
from jaxretrieval.data.train_pairs import TrainPairs
from jaxretrieval.errors import InputError
from jaxretrieval.files import upath
from jaxretrieval.sources import train_sources

DATA_SUFFIXES = (".jsonl", ".csv", ".tsv", ".txt")


def query_hash(query_id: str) -> float:
    """A query's place in [0, 1): the first 8 bytes of sha256 of its id, the same in every process."""
    return int.from_bytes(hashlib.sha256(query_id.encode()).digest()[:8], "big") / 2.0 ** 64


def dev_query_ids(query_ids: Iterable[str], size: float, where: str = "config") -> set[str]:
    """The ids held out as dev: a fraction (0 < size < 1) or a count (size >= 1) of `query_ids`, chosen by hash.
    Holding out nothing, or every query, is an InputError (there would be no dev set, or nothing to train on)."""
    ids = list(dict.fromkeys(query_ids))
    if size >= 1:
        if int(size) != size:
            raise InputError(f"data.dev_queries {size} is a count (>= 1) that is not whole", where,
                             field="data.dev_queries")
        chosen = set(sorted(ids, key=query_hash)[:int(size)])
    else:
        chosen = {q for q in ids if query_hash(q) < size}
    if not chosen or len(chosen) >= len(ids):
        raise InputError(f"data.dev_queries {size} holds out {len(chosen)} of {len(ids)} queries; dev and training "
                         f"each need at least one", where, field="data.dev_queries")
    return chosen


def dev_ids_of(root: str, split: str, size: float) -> tuple[set[str], dict[str, str]]:
    """(dev query ids, every query's text) of a BEIR directory's `split`, reading only qrels and queries."""
    d = upath(root)
    qrels_path = d / "qrels" / f"{split}.tsv"
    if not qrels_path.exists():
        raise InputError(f"data.dev_queries carves dev queries from a BEIR directory's qrels/{split}.tsv (split: "
                         f"eval.dev_split), which this path does not have; name one in eval.dev_data", d,
                         field="eval.dev_data")
    judged = [q for q, docs in read_qrels(qrels_path).items() if any(r > 0 for r in docs.values())]
    return dev_query_ids(judged, size, str(qrels_path)), read_queries(d / "queries.jsonl")


def load_dev(root: str, split: str, size: float) -> BeirSplit:
    """The dev queries of a BEIR directory's `split`, searched over its whole corpus, with their judgements."""
    full = load_beir(root, split)
    chosen, _ = dev_ids_of(root, split, size)
    keep = [i for i, q in enumerate(full.query_ids) if q in chosen]
    ids = [full.query_ids[i] for i in keep]
    return dataclasses.replace(full, query_ids=ids, query_texts=[full.query_texts[i] for i in keep],
                               qrels={q: full.qrels[q] for q in ids})


@dataclasses.dataclass(frozen=True)
class HeldOut:
    """Dev query texts that training must not see. A training query matches when it is one of them or ends with
    one (a prompt before it), so no prompt lets a dev query through; a rare over-match only drops a training
    example, never leaks one."""

    texts: frozenset[str] = frozenset()

    @property
    def _lengths(self) -> tuple[int, ...]:
        return tuple(sorted({len(t) for t in self.texts}))

    def __bool__(self) -> bool:
        return bool(self.texts)

    def __contains__(self, query: str) -> bool:
        return any(query[-n:] in self.texts for n in self._lengths if n <= len(query))

    def drop_from_pairs(self, pairs: TrainPairs) -> TrainPairs:
        """The examples whose query is not held out; an InputError when none is left."""
        if not self:
            return pairs
        lengths = self._lengths
        held = [any(q[-n:] in self.texts for n in lengths if n <= len(q)) for q in pairs.query_texts]
        keep = [i for i, q in enumerate(pairs.query) if not held[int(q)]]
        if len(keep) == len(pairs):
            return pairs
        if not keep:
            raise InputError("every training example's query is a dev query (data.dev_queries)", pairs.source,
                             field="data.dev_queries")
        pick = lambda xs: None if xs is None else [xs[i] for i in keep]  # noqa: E731
        return dataclasses.replace(pairs, query=pairs.query[keep], positives=pick(pairs.positives),
                                   negatives=pick(pairs.negatives), positive_scores=pick(pairs.positive_scores),
                                   negative_scores=pick(pairs.negative_scores))

    def keep_rows(self, texts: list[str]) -> list[int]:
        """Rows of a text list (distillation texts) that are not dev queries."""
        return [i for i, t in enumerate(texts) if t not in self]


def dev_sources(cfg: Any) -> list[str]:
    """The BEIR directories dev queries are carved from: eval.dev_data, or else the training sources that are
    directories (a BEIR source trains on its `split`, which is where its dev queries come from)."""
    if cfg.eval.dev_data:
        return list(cfg.eval.dev_data)
    return [s.path for s in train_sources(cfg) if not str(s.path).endswith(DATA_SUFFIXES)]


def held_out(cfg: Any) -> HeldOut:
    """What training must leave out for this config's dev split (nothing when data.dev_queries is 0)."""
    size = cfg.data.dev_queries
    if not size:
        return HeldOut()
    roots = tuple(str(r) for r in dev_sources(cfg))
    if not roots:
        raise InputError("data.dev_queries carves dev queries from a BEIR directory: data.train has none, so name "
                         "one in eval.dev_data", "config", field="data.dev_queries")
    return _held_out(roots, cfg.eval.dev_split, float(size))


@functools.lru_cache(maxsize=8)
def _held_out(roots: tuple[str, ...], split: str, size: float) -> HeldOut:
    """One read per run of the dev queries' texts (a mixture's every source asks for them)."""
    texts: set[str] = set()
    for root in roots:
        chosen, queries = dev_ids_of(root, split, size)
        texts.update(queries[q] for q in chosen if q in queries)
    return HeldOut(frozenset(texts))
