"""Reference figure: sentence-transformers (PyTorch) zero-shot on a BEIR split, same metrics as `jaxretrieval eval`.

    python benchmarks/st_scifact_eval.py [--model DIR] [--data BEIR_DIR] [--split test]
Prints one JSON line: the number `jaxretrieval eval` must match (within 0.003 nDCG@10).
"""

import argparse
import json
import sys

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from common import MINILM, SCIFACT  # noqa: E402


def evaluate_st(st, data, batch_size: int = 32) -> dict:
    from jaxretrieval.eval.metrics import retrieval_metrics
    from jaxretrieval.eval.retrieval import rankings_from_search
    from jaxretrieval.eval.search import exact_search

    docs = st.encode(data.doc_texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=True)
    queries = st.encode(data.query_texts, batch_size=batch_size, normalize_embeddings=True)
    _, index = exact_search(queries, docs, 100)
    metrics = retrieval_metrics(rankings_from_search(index, data.query_ids, data.doc_ids), data.qrels)
    metrics.update(num_queries=len(data.query_ids), num_docs=len(data.doc_ids))
    return metrics


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(MINILM))
    ap.add_argument("--data", default=str(SCIFACT))
    ap.add_argument("--split", default="test")
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()

    from sentence_transformers import SentenceTransformer

    from jaxretrieval.data.beir import load_beir

    metrics = evaluate_st(SentenceTransformer(args.model, device="cpu"), load_beir(args.data, args.split),
                          args.batch_size)
    metrics["engine"] = "sentence-transformers"
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
