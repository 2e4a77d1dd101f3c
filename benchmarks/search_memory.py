"""Exact search over a large random corpus: time and peak memory beyond the corpus itself.

    python benchmarks/search_memory.py [--docs 1000000] [--dim 768] [--queries 1000]
The corpus lives in a memory-mapped .npy on disk, so the process's resident memory shows what the search adds:
one corpus chunk plus the running top-k, not a [queries x docs] score matrix (which would be 4 GB here).
"""

import argparse
import resource
import tempfile
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=100)
    args = ap.parse_args()

    from jaxretrieval.eval.search import exact_search

    path = tempfile.mktemp(suffix=".npy")
    corpus = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(args.docs, args.dim))
    rng = np.random.default_rng(0)
    for start in range(0, args.docs, 65536):
        corpus[start:start + 65536] = rng.standard_normal((min(65536, args.docs - start), args.dim), np.float32)
    corpus.flush()
    del corpus
    corpus = np.load(path, mmap_mode="r")
    queries = rng.standard_normal((args.queries, args.dim), np.float32)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    scores, index = exact_search(queries, corpus, args.k)
    secs = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    check = np.argsort(-(queries[:3] @ np.asarray(corpus[:]).T), axis=1)[:, : args.k] if args.docs <= 200_000 else None
    print(f"corpus {args.docs} x {args.dim} float32 = {args.docs * args.dim * 4 / 2**30:.2f} GiB (memory-mapped), "
          f"{args.queries} queries, k={args.k}")
    print(f"search time {secs:.1f} s; peak RSS {peak:.0f} MiB, of which the search added {peak - before:.0f} MiB "
          f"(RSS before it, {before:.0f} MiB, already holds the corpus pages this process wrote); "
          f"a full score matrix would be {args.queries * args.docs * 4 / 2**30:.2f} GiB")
    if check is not None:
        print("top-k matches brute force:", bool((check == index[:3]).all()))


if __name__ == "__main__":
    main()
