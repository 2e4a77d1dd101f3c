"""Encoding throughput on SciFact's corpus: jaxretrieval vs sentence-transformers, same CPU, batch and max length.

    python benchmarks/encode_throughput.py [--limit 1024] [--batch-size 32]
Prints a table: texts/s, tokens/s, achieved GFLOP/s and its fraction of the machine's fp32 matmul peak, and the
ratio ours / sentence-transformers. Both runs see the same texts; each is timed after one warm-up pass over a
sample, so compilation is not counted against either (it is reported separately for ours).
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MINILM, PEAK_GFLOPS, SCIFACT, encoder_forward_flops, print_table  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(MINILM))
    ap.add_argument("--data", default=str(SCIFACT))
    ap.add_argument("--limit", type=int, default=1024, help="number of corpus texts (0 = all 5,183)")
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()

    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    from jaxretrieval.convert.hf_format import read_hf_config
    from jaxretrieval.convert.st_format import load_embedder
    from jaxretrieval.data.beir import load_beir
    from jaxretrieval.data.tokenize import bucket_for, inference_length_buckets
    from jaxretrieval.inference import encode_texts

    texts = load_beir(args.data, "test").doc_texts
    texts = texts[: args.limit] if args.limit else texts
    loaded = load_embedder(args.model)
    max_len = loaded.model.spec.max_length
    lengths = [len(ids) for ids in loaded.tokenizer.tokenize(texts)["input_ids"]]
    flops = encoder_forward_flops(read_hf_config(args.model), lengths)  # useful work, unpadded
    rows = []

    t0 = time.perf_counter()
    # one text per bucket compiles every shape the timed run can meet
    buckets = inference_length_buckets(max_len)
    sample = {bucket_for(n, buckets): t for n, t in zip(lengths, texts)}
    encode_texts(loaded, list(sample.values()) * args.batch_size, batch_size=args.batch_size)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = encode_texts(loaded, texts, batch_size=args.batch_size)
    ours_s = time.perf_counter() - t0

    st = SentenceTransformer(args.model, device="cpu")
    st.max_seq_length = max_len
    st.encode(texts[: args.batch_size * 2], batch_size=args.batch_size)
    t0 = time.perf_counter()
    ref = st.encode(texts, batch_size=args.batch_size, normalize_embeddings=True)
    st_s = time.perf_counter() - t0

    for name, secs, extra in [("sentence-transformers", st_s, f"torch {torch.__version__}, "
                               f"{torch.get_num_threads()} threads"),
                              ("jaxretrieval", ours_s, f"warm-up/compile {compile_s:.1f}s")]:
        rows.append({"engine": name, "texts": len(texts), "seconds": secs, "texts/s": len(texts) / secs,
                     "tokens/s": sum(lengths) / secs, "GFLOP/s": flops / secs / 1e9,
                     "of peak": flops / secs / 1e9 / PEAK_GFLOPS, "notes": extra})
    rows[1]["ratio"] = st_s / ours_s
    print(f"model={args.model} batch={args.batch_size} max_length={max_len} "
          f"max |ours - st| = {np.abs(ours - ref).max():.2e}")
    print_table(rows, ["engine", "texts", "seconds", "texts/s", "tokens/s", "GFLOP/s", "of peak", "ratio", "notes"])


if __name__ == "__main__":
    main()
