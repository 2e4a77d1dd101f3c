"""Time to encode a BEIR corpus and its queries in a fresh process: compilation against work, by padded-length
density and with JAX's persistent compilation cache cold or warm.

    python benchmarks/encode_compile_time.py [--model DIR] [--data BEIR_DIR] [--limit 0] [--per-octave 4,1]

Each row is one new process (as every `jaxretrieval train` stage, seed or `eval` is): "first pass" includes
compiling one program per padded length met, "second pass" is the same texts again with everything compiled,
so first - second is the compile cost. "load s" is building the model from the checkpoint (after the
tokenizer library's import, "import s"). For each density the cache folder starts empty ("cold") and the next
process reads it ("warm"). The reason for data.tokenize.inference_length_buckets and
cli.configure_compilation_cache; docs/results.md records what it printed on an H100.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MINILM, SCIFACT, print_table  # noqa: E402


def child(args) -> dict:
    """One process's measurement; JAX_COMPILATION_CACHE_DIR is set by the parent before jax is imported."""
    import jax

    from jaxretrieval.convert.st_format import load_embedder
    from jaxretrieval.data.beir import load_beir
    from jaxretrieval.data.tokenize import length_buckets
    from jaxretrieval.inference import encode_texts

    data = load_beir(args.data, "test")
    docs = data.doc_texts[: args.limit] if args.limit else data.doc_texts
    t0 = time.perf_counter()
    from transformers import AutoTokenizer  # noqa: F401  (its import chain is most of a load on CPU)
    import_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    loaded = load_embedder(args.model)
    load_s = time.perf_counter() - t0
    buckets = length_buckets(loaded.model.spec.max_length, per_octave=args.child)
    sets = ((docs, "doc"), (data.query_texts, "query"))
    lengths = {b.input_ids.shape[1] for texts, kind in sets  # the shapes the passes will compile, counted untimed
               for b in loaded.tokenizer.batches(texts, args.batch_size, kind, buckets)}
    passes = []
    for _ in range(2):
        t0 = time.perf_counter()
        for texts, kind in sets:
            vecs = encode_texts(loaded, texts, kind, args.batch_size, buckets=buckets)
        passes.append(time.perf_counter() - t0)
    return {"backend": jax.default_backend(), "device": jax.devices()[0].device_kind, "import_s": import_s,
            "load_s": load_s,
            "first_s": passes[0], "second_s": passes[1], "lengths": len(lengths), "texts": len(docs) +
            len(data.query_texts), "checksum": float(abs(vecs).sum())}


def run_child(args, per_octave: int, cache_dir: str) -> dict:
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=cache_dir)
    cmd = [sys.executable, __file__, "--child", str(per_octave), "--model", args.model, "--data", args.data,
           "--limit", str(args.limit), "--batch-size", str(args.batch_size)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"child failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(MINILM))
    ap.add_argument("--data", default=str(SCIFACT))
    ap.add_argument("--limit", type=int, default=0, help="corpus texts to encode (0 = all)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--per-octave", default="4,1", help="padded lengths per doubling to compare")
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    rows = []
    for per_octave in (int(x) for x in args.per_octave.split(",")):
        with tempfile.TemporaryDirectory() as cache:
            for state in ("cold", "warm"):
                r = run_child(args, per_octave, cache)
                rows.append({"per octave": per_octave, "cache": state, "lengths": r["lengths"],
                             "first pass s": f"{r['first_s']:.1f}", "second pass s": f"{r['second_s']:.1f}",
                             "compile s": f"{r['first_s'] - r['second_s']:.1f}",
                             "texts/s (compiled)": f"{r['texts'] / r['second_s']:.0f}",
                             "import s": f"{r['import_s']:.1f}",
                             "load s": f"{r['load_s']:.1f}"})
                print(json.dumps({"per_octave": per_octave, "cache": state, **r}), file=sys.stderr, flush=True)
    print(f"{r['texts']} texts, batch {args.batch_size}, {r['backend']} ({r['device']})")
    print_table(rows, list(rows[0]))


if __name__ == "__main__":
    main()
