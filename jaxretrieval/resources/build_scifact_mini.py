"""Rebuild the bundled SciFact sample (scifact-mini/) from a full BEIR SciFact directory.

    python -m jaxretrieval.resources.build_scifact_mini ../shared/data/scifact

Keeps 320 train judgements (10 steps of batch 32), 100 test queries, and a corpus of every judged document
plus seeded random distractors, 800 documents in all (< 2 MB).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from jaxretrieval.data.beir import read_qrels

HERE = Path(__file__).resolve().parent / "scifact-mini"


def build(src: Path, dst: Path = HERE, train_rows: int = 320, test_queries: int = 100, corpus_size: int = 800,
          seed: int = 0) -> None:
    rng = random.Random(seed)
    train = [(q, d, r) for q, docs in read_qrels(src / "qrels" / "train.tsv").items() for d, r in docs.items()]
    train = sorted(rng.sample(train, train_rows))
    test_all = read_qrels(src / "qrels" / "test.tsv")
    test_ids = sorted(rng.sample(sorted(test_all), test_queries))
    test = [(q, d, r) for q in test_ids for d, r in test_all[q].items()]
    corpus = [json.loads(line) for line in open(src / "corpus.jsonl", encoding="utf-8")]
    keep = {d for _, d, _ in train + test}
    others = [doc["_id"] for doc in corpus if doc["_id"] not in keep]
    keep |= set(rng.sample(others, corpus_size - len(keep)))
    queries = {q for q, _, _ in train + test}
    (dst / "qrels").mkdir(parents=True, exist_ok=True)
    with open(dst / "corpus.jsonl", "w", encoding="utf-8") as f:
        for doc in corpus:
            if doc["_id"] in keep:
                f.write(json.dumps({"_id": doc["_id"], "title": doc.get("title", ""), "text": doc["text"]}) + "\n")
    with open(dst / "queries.jsonl", "w", encoding="utf-8") as f, open(src / "queries.jsonl",
                                                                        encoding="utf-8") as g:
        for line in g:
            q = json.loads(line)
            if q["_id"] in queries:
                f.write(json.dumps({"_id": q["_id"], "text": q["text"]}) + "\n")
    for name, rows in (("train", train), ("test", test)):
        with open(dst / "qrels" / f"{name}.tsv", "w", encoding="utf-8") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            f.writelines(f"{q}\t{d}\t{r}\n" for q, d, r in rows)


if __name__ == "__main__":
    build(Path(sys.argv[1]))
