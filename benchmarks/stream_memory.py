"""Memory of data larger than RAM: `prepare` and 200 training steps on a generated dataset of 5 million rows and of
50 thousand, each in its own process, with peak RSS side by side (the bar: 5M / 50K <= 1.2 for both), and the
prepared stream's input rate against what a MiniLM batch-32 training step consumes on this CPU (the bar: >= 10x).

    python benchmarks/stream_memory.py [--rows 50000 5000000] [--steps 200] [--work DIR]

The model trained is a tiny random BERT with MiniLM's tokenizer, so the prepared tokens are MiniLM's; the MiniLM
step is timed on batches of the same prepared data (short generated texts, so a faster step and a stricter bar
than on SciFact's documents). Peak RSS is the kernel's ru_maxrss of each child process (os.wait4). Resuming reads
the skipped part of an epoch without parsing it; its rate is printed too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MINILM, REPO, print_table  # noqa: E402

Q_LEN, D_LEN, BATCH = 32, 64, 32


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def tiny_minilm(path: Path) -> Path:
    """MiniLM's tokenizer and sentence-transformers files around a random 2-layer, 32-wide BERT."""
    from transformers import BertConfig, BertModel

    shutil.copytree(MINILM, path, ignore=shutil.ignore_patterns("model.safetensors", "*.bin", "onnx", "openvino"))
    base = json.loads((MINILM / "config.json").read_text())
    config = BertConfig(**{**base, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                           "intermediate_size": 64})
    BertModel(config).save_pretrained(path)
    pooling = path / "1_Pooling" / "config.json"
    pooling.write_text(json.dumps({**json.loads(pooling.read_text()), "word_embedding_dimension": 32}))
    return path


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """{query, pos, neg} rows of random MiniLM vocabulary words: queries 4-8 words, documents 10-20."""
    import numpy as np

    vocab = json.loads((MINILM / "tokenizer.json").read_text())["model"]["vocab"]
    vocab = [w for w in vocab if w.isalpha() and w.isascii() and len(w) > 2]
    words = np.array(vocab)
    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        for start in range(0, rows, 100_000):
            n = min(100_000, rows - start)
            lengths = np.stack([rng.integers(4, 9, n), rng.integers(10, 21, n), rng.integers(10, 21, n)], 1)
            picks = words[rng.integers(len(words), size=int(lengths.sum()))].tolist()
            at, lines = 0, []
            for q, p, g in lengths.tolist():
                query, pos, neg = (" ".join(picks[a:b]) for a, b in ((at, at + q), (at + q, at + q + p),
                                                                     (at + q + p, at + q + p + g)))
                at += q + p + g
                lines.append(json.dumps({"query": query, "pos": [pos], "neg": [neg]}))
            f.write("\n".join(lines) + "\n")


def run_child(argv: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB, stdout) of a child process, its ru_maxrss from os.wait4."""
    t = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t
        out.seek(0)
        err.seek(0)
        if proc.returncode:
            raise SystemExit(f"{' '.join(map(str, argv[:5]))} failed ({proc.returncode}):\n{err.read()[-3000:]}")
        return wall, usage.ru_maxrss / 1024, out.read()


def measure_input(prepared: str, model: str, batches: int, skip_steps: int) -> None:
    """Child mode: rows/s of the prepared stream alone (assembly included), and of resuming `skip_steps` in."""
    from jaxretrieval.config import load_config
    from jaxretrieval.train.model_setup import build_model
    from jaxretrieval.train.tasks import TASKS

    cfg = load_config(None, [f"output_dir={tempfile.mkdtemp()}", f"model.path={model}", f"data.train={prepared}",
                             f"batch_size={BATCH}", "data.num_negatives=1", f"model.max_query_length={Q_LEN}",
                             f"model.max_doc_length={D_LEN}"])
    source = TASKS["dense"].build(cfg, build_model(cfg, initialize=False)).source
    stream = source.stream(0, batches + 1)
    next(stream)  # tf.data start-up
    t = time.perf_counter()
    for _ in stream:
        pass
    rate = batches * BATCH / (time.perf_counter() - t)
    skip = min(skip_steps, source.steps_per_epoch - 1)
    t = time.perf_counter()
    next(source.stream(skip, skip + 1))
    resume_s = time.perf_counter() - t
    print(json.dumps({"input_rows_per_s": rate, "resume_skipped_rows": skip * BATCH, "resume_s": resume_s}))


def measure_minilm_step(prepared: str, steps: int = 4) -> None:
    """Child mode: seconds per MiniLM training step, batch 32 with one hard negative, on the prepared batches."""
    import jax

    from jaxretrieval.config import load_config
    from jaxretrieval.train.loop import global_batch, init_train_state, setup, train_step_for

    cfg = load_config(None, [f"output_dir={tempfile.mkdtemp()}", f"model.path={MINILM}", f"data.train={prepared}",
                             f"batch_size={BATCH}", "data.num_negatives=1", f"model.max_query_length={Q_LEN}",
                             f"model.max_doc_length={D_LEN}", "learning_rate=2e-5"])
    run = setup(cfg)
    ts = init_train_state(run)
    step, teacher = train_step_for(run, ts)
    state = ts.state
    batches = [global_batch(b, ts.batch_shardings) for b in run.source.stream(0, steps + 1)]
    state, m = step(state, batches[0], teacher)  # compile
    jax.block_until_ready(m)
    t = time.perf_counter()
    for b in batches[1:]:
        state, m = step(state, b, teacher)
    jax.block_until_ready(m)
    print(json.dumps({"minilm_step_s": (time.perf_counter() - t) / steps}))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child-input":
        return measure_input(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    if len(sys.argv) > 1 and sys.argv[1] == "--child-minilm":
        return measure_minilm_step(sys.argv[2])
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="+", default=[50_000, 5_000_000])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--work", help="working directory (default: a temporary one, removed after)")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="stream_memory."))
    work.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    print(f"CPU: {cpu_model()} ({os.cpu_count()} cores); steps {args.steps}, batch {BATCH}, lengths {Q_LEN}/{D_LEN}")
    model = tiny_minilm(work / "tiny") if not (work / "tiny").exists() else work / "tiny"
    rows = []
    for n in args.rows:
        data, prepared = work / f"rows{n}.jsonl", work / f"prepared{n}"
        if not data.exists():
            t = time.perf_counter()
            generate(data, n)
            print(f"generated {n} rows ({data.stat().st_size / 2 ** 20:.0f} MiB) in {time.perf_counter() - t:.0f} s",
                  flush=True)
        shutil.rmtree(prepared, ignore_errors=True)
        prep_s, prep_rss, _ = run_child([py, "-m", "jaxretrieval.cli", "prepare", "--model", str(model), "--data",
                                         str(data), "--out", str(prepared), "--shards", "16", "--max-query-length",
                                         str(Q_LEN), "--max-doc-length", str(D_LEN)])
        print(f"{n}: prepared in {prep_s:.0f} s, peak RSS {prep_rss:.0f} MiB", flush=True)
        run_dir = work / f"run{n}"
        shutil.rmtree(run_dir, ignore_errors=True)
        (work / "train.yaml").write_text(TRAIN_YAML)
        train_s, train_rss, _ = run_child([py, "-m", "jaxretrieval.cli", "train", str(work / "train.yaml"),
                                           f"output_dir={run_dir}", f"model.path={model}", f"data.train={prepared}",
                                           f"steps={args.steps}"])
        print(f"{n}: trained {args.steps} steps in {train_s:.0f} s, peak RSS {train_rss:.0f} MiB", flush=True)
        _, _, out = run_child([py, __file__, "--child-input", str(prepared), str(model), str(args.steps),
                               str(n // BATCH // 2)])
        rows.append({"rows": n, "prepare_s": prep_s, "prepare_rows_per_s": n / prep_s, "prepare_peak_MiB": prep_rss,
                     "train_s": train_s, "train_peak_MiB": train_rss, **json.loads(out.strip().splitlines()[-1])})
    _, _, out = run_child([py, __file__, "--child-minilm", str(work / f"prepared{args.rows[0]}")])
    step_s = json.loads(out.strip().splitlines()[-1])["minilm_step_s"]
    consumed = BATCH / step_s
    for r in rows:
        r["resume_rows_per_s"] = r.pop("resume_skipped_rows") / r.pop("resume_s")
        r["input_vs_minilm"] = r["input_rows_per_s"] / consumed
    print_table(rows, ["rows", "prepare_s", "prepare_rows_per_s", "prepare_peak_MiB", "train_s", "train_peak_MiB",
                       "input_rows_per_s", "resume_rows_per_s", "input_vs_minilm"])
    print(f"MiniLM batch-{BATCH} step: {step_s:.3f} s = {consumed:.1f} rows/s consumed")
    big, small = rows[-1], rows[0]
    for what in ("prepare_peak_MiB", "train_peak_MiB"):
        ratio = big[what] / small[what]
        print(f"{what}: {big['rows']} / {small['rows']} rows = {ratio:.3f} (bar <= 1.2: "
              f"{'met' if ratio <= 1.2 else 'NOT met'})")
    worst = min(r["input_vs_minilm"] for r in rows)
    print(f"input rate / MiniLM consumption: {worst:.1f}x at worst (bar >= 10: {'met' if worst >= 10 else 'NOT met'})")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


TRAIN_YAML = f"""# benchmarks/stream_memory.py: a tiny model trained from prepared shards, nothing but training
batch_size: {BATCH}
learning_rate: 1.0e-3
log_every: 50
save_every: 0
data:
  num_negatives: 1
model:
  max_query_length: {Q_LEN}
  max_doc_length: {D_LEN}
"""


if __name__ == "__main__":
    main()
