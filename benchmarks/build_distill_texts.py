"""The text set for the Stella-recipe distillation run: SciFact *train* queries (test queries stay unseen),
the first N SciFact corpus documents (title + abstract), and up to M distinct STS-B train sentences.

    python benchmarks/build_distill_texts.py --out runs/distill/texts.jsonl [--docs 600] [--sts 3000]

`--exclude OLD.jsonl` leaves out texts already in OLD, so a larger set can be built by encoding only the new
texts and appending them (jsonl and .npy rows) to the old ones; teacher encoding is the expensive part.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SCIFACT  # noqa: E402

STSB = SCIFACT.parent / "stsbenchmark"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("runs/distill/texts.jsonl"))
    ap.add_argument("--docs", type=int, default=600)
    ap.add_argument("--sts", type=int, default=3000)
    ap.add_argument("--exclude", type=Path, help="a texts.jsonl whose texts are left out (already encoded)")
    args = ap.parse_args()

    from jaxretrieval.data.beir import read_corpus, read_qrels, read_queries
    from jaxretrieval.data.sts_file import read_sts

    queries = read_queries(SCIFACT / "queries.jsonl")
    train_ids = list(read_qrels(SCIFACT / "qrels" / "train.tsv"))
    texts = [queries[q] for q in train_ids]
    _, docs = read_corpus(SCIFACT / "corpus.jsonl")
    texts += docs[: args.docs]
    first, second, _ = read_sts(STSB / "sts-train.csv")
    texts += list(dict.fromkeys(first + second))[: args.sts]
    texts = list(dict.fromkeys(texts))
    if args.exclude:
        seen = {json.loads(line)["text"] for line in args.exclude.read_text().splitlines() if line.strip()}
        texts = [t for t in texts if t not in seen]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    print(f"{len(texts)} texts -> {args.out}")


if __name__ == "__main__":
    main()
