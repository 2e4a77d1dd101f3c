"""BEIR directories: corpus.jsonl, queries.jsonl, qrels/{split}.tsv (header `query-id corpus-id score`)."""

from __future__ import annotations

import dataclasses
import os

from jaxretrieval.data.jsonl import iter_jsonl, iter_lines, require_str
from jaxretrieval.errors import InputError
from jaxretrieval.files import UPath, upath


@dataclasses.dataclass
class BeirSplit:
    doc_ids: list[str]
    doc_texts: list[str]  # title + " " + text, as BEIR's sentence-transformers models see them
    query_ids: list[str]  # only queries that have judgements in this split, in queries.jsonl order
    query_texts: list[str]
    qrels: dict[str, dict[str, int]]  # query id → {doc id: graded relevance}


def read_qrels(path: UPath) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for lineno, line in iter_lines(path):
        parts = line.split("\t")
        if lineno == 1 and parts[:1] == ["query-id"]:
            continue
        if not line.strip():
            continue
        if len(parts) != 3:
            raise InputError(f"expected 3 tab-separated fields (query-id, corpus-id, score), got {len(parts)}",
                             path, lineno)
        try:
            score = int(float(parts[2]))
        except (ValueError, OverflowError):
            raise InputError(f"score {parts[2]!r} is not a number", path, lineno, field="score") from None
        qrels.setdefault(parts[0], {})[parts[1]] = score
    return qrels


def read_corpus(path: UPath) -> tuple[list[str], list[str]]:
    ids, texts = [], []
    for lineno, obj in iter_jsonl(path):
        doc_id = str(obj.get("_id", "")) if obj.get("_id") is not None else ""
        if not doc_id:
            raise InputError("missing field '_id'", path, lineno, field="_id")
        text = require_str(obj, "text", path, lineno)
        title = obj.get("title") or ""
        ids.append(doc_id)
        texts.append(f"{title} {text}".strip() if title else text)
    return ids, texts


def read_queries(path: UPath) -> dict[str, str]:
    out = {}
    for lineno, obj in iter_jsonl(path):
        if obj.get("_id") is None:
            raise InputError("missing field '_id'", path, lineno, field="_id")
        out[str(obj["_id"])] = require_str(obj, "text", path, lineno)
    return out


def load_beir(root: str | os.PathLike, split: str = "test") -> BeirSplit:
    d = upath(root)
    if not d.is_dir():
        raise InputError("BEIR directory does not exist", d)
    qrels_path = d / "qrels" / f"{split}.tsv"
    if not qrels_path.exists():
        have = sorted(p.stem for p in (d / "qrels").glob("*.tsv")) if (d / "qrels").is_dir() else []
        raise InputError(f"no qrels for split {split!r} (found: {', '.join(have) or 'none'})", qrels_path)
    qrels = read_qrels(qrels_path)
    doc_ids, doc_texts = read_corpus(d / "corpus.jsonl")
    queries = read_queries(d / "queries.jsonl")
    missing = [q for q in qrels if q not in queries]
    if missing:
        raise InputError(f"{len(missing)} query ids in qrels are not in queries.jsonl, e.g. {missing[:3]}",
                         qrels_path)
    query_ids = [q for q in queries if q in qrels]
    return BeirSplit(doc_ids, doc_texts, query_ids, [queries[q] for q in query_ids],
                     {q: qrels[q] for q in query_ids})
