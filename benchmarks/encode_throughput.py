"""Encoding throughput on SciFact's corpus: jaxretrieval vs sentence-transformers, same CPU, batch and max length,
in float32 and in bfloat16 (sentence-transformers with model_kwargs torch_dtype=bfloat16, ours with
--compute-dtype bfloat16).

    python benchmarks/encode_throughput.py [--limit 1024] [--batch-size 32] [--xla-flags "..."]
Prints the CPU and the matmul ceilings measured now, then a table: texts/s, tokens/s, achieved GFLOP/s and its
fraction of the ceiling (same engine and dtype), the fraction of computed tokens that are real (not padding), the
largest difference from sentence-transformers' float32 vectors, and the ratio ours / sentence-transformers in the
same dtype, for our jit forward (sorted buckets, packed) and our torch backend (--backend torch: the exported
model run by sentence-transformers inside jaxretrieval). Every engine sees the same texts; each is timed after one
warm-up pass, so compilation is not counted against ours (it is reported apart). --xla-flags sets XLA_FLAGS for
our runs (e.g. to try XLA's CPU library fusions).
"""

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (MINILM, SCIFACT, cpu_description, encoder_forward_flops, matmul_ceiling,  # noqa: E402
                    print_table)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(MINILM))
    ap.add_argument("--data", default=str(SCIFACT))
    ap.add_argument("--limit", type=int, default=1024, help="number of corpus texts (0 = all 5,183)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--xla-flags", default=None)
    ap.add_argument("--dtypes", default="float32,bfloat16")
    args = ap.parse_args()
    if args.xla_flags is not None:
        os.environ["XLA_FLAGS"] = args.xla_flags

    import jax.numpy as jnp
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    from jaxretrieval.convert.hf_format import read_hf_config
    from jaxretrieval.convert.st_format import load_embedder
    from jaxretrieval.convert.torch_backend import TorchEmbedder
    from jaxretrieval.data.beir import load_beir
    from jaxretrieval.data.packing import packed_tokens
    from jaxretrieval.data.tokenize import bucket_for, inference_length_buckets, padded_tokens
    from jaxretrieval.inference import encode_texts

    print(cpu_description(), f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}", flush=True)
    ceiling = matmul_ceiling()
    print("matmul ceiling, GFLOP/s: " + ", ".join(f"{k} {v:.0f}" for k, v in ceiling.items()), flush=True)
    texts = load_beir(args.data, "test").doc_texts
    texts = texts[: args.limit] if args.limit else texts
    dtypes = args.dtypes.split(",")
    rows, vectors, keys = [], {}, []  # keys[i]: the vectors of rows[i]

    def row(engine, dtype, secs, real, extra):
        kind = f"{'torch' if engine == 'sentence-transformers' or 'torch' in engine else 'jax'} {dtype}"
        return {"engine": engine, "dtype": dtype, "texts": len(texts), "seconds": secs, "texts/s": len(texts) / secs,
                "tokens/s": sum(lengths) / secs, "GFLOP/s": flops / secs / 1e9,
                "of ceiling": flops / secs / 1e9 / ceiling[kind], "real tokens": f"{real:.1%}", "notes": extra}

    loaded = load_embedder(args.model)
    max_len = loaded.model.spec.max_length
    lengths = [len(ids) for ids in loaded.tokenizer.tokenize(texts)["input_ids"]]
    flops = encoder_forward_flops(read_hf_config(args.model), lengths)  # useful work, unpadded
    buckets = inference_length_buckets(max_len)
    padded = padded_tokens(lengths, args.batch_size, buckets)
    packed = packed_tokens(lengths, args.batch_size, bucket_for(max(lengths), buckets))

    for dtype in dtypes:
        kwargs = {"model_kwargs": {"torch_dtype": torch.bfloat16}} if dtype == "bfloat16" else {}
        st = SentenceTransformer(args.model, device="cpu", **kwargs)
        st.max_seq_length = max_len
        st.encode(texts[: args.batch_size * 2], batch_size=args.batch_size)
        t0 = time.perf_counter()
        vectors["st", dtype] = np.asarray(st.encode(texts, batch_size=args.batch_size, normalize_embeddings=True),
                                          np.float32)
        st_s = time.perf_counter() - t0
        st_real = sum(lengths) / padded_tokens(lengths, args.batch_size, range(1, max_len + 1))
        rows.append(row("sentence-transformers", dtype, st_s, st_real,
                        f"torch {torch.__version__}, {torch.get_num_threads()} threads"))
        keys.append(("st", dtype))
        loaded = load_embedder(args.model, dtype=jnp.bfloat16 if dtype == "bfloat16" else jnp.float32)
        for mode, real in ((False, sum(lengths) / padded), (True, sum(lengths) / packed)):
            t0 = time.perf_counter()
            sample = {bucket_for(n, buckets): t for n, t in zip(lengths, texts)}  # every shape the run can meet
            encode_texts(loaded, list(sample.values()) * args.batch_size, batch_size=args.batch_size, packed=mode)
            compile_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            vectors["ours", dtype, mode] = encode_texts(loaded, texts, batch_size=args.batch_size, packed=mode)
            secs = time.perf_counter() - t0
            rows.append(row(f"jaxretrieval {'packed' if mode else 'sorted buckets'}", dtype, secs, real,
                            f"warm-up/compile {compile_s:.1f}s"))
            rows[-1]["ratio"] = st_s / secs
            keys.append(("ours", dtype, mode))
        backed = dataclasses.replace(loaded, backend=TorchEmbedder(load_embedder(args.model), dtype))
        encode_texts(backed, texts[: args.batch_size * 2], batch_size=args.batch_size)
        t0 = time.perf_counter()
        vectors["ours", dtype, "torch"] = encode_texts(backed, texts, batch_size=args.batch_size)
        secs = time.perf_counter() - t0
        rows.append(row("jaxretrieval --backend torch", dtype, secs, st_real, "exported, run by sentence-transformers"))
        rows[-1]["ratio"] = st_s / secs
        keys.append(("ours", dtype, "torch"))
        del st
    if ("st", "float32") in vectors:
        for r, key in zip(rows, keys):
            r["max |v - st fp32|"] = float(np.abs(vectors[key] - vectors["st", "float32"]).max())
    print(f"model={args.model} batch={args.batch_size} max_length={max_len}; the automatic choice here: "
          f"{'packed' if packed <= 0.9 * padded else 'sorted buckets'} ({packed} vs {padded} computed tokens)")
    print_table(rows, ["engine", "dtype", "texts", "seconds", "texts/s", "tokens/s", "GFLOP/s", "of ceiling",
                       "real tokens", "max |v - st fp32|", "ratio", "notes"])


if __name__ == "__main__":
    main()
