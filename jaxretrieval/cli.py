"""`jaxretrieval <command>`: the command-line front door. Each command is a small function; bad input
(InputError) becomes one line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported below

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxretrieval.bundles import Bundle  # noqa: E402
from jaxretrieval.config import MeshConfig, config_paths, config_to_dict, load_config  # noqa: E402
from jaxretrieval.convert.export import check_export_args, export  # noqa: E402
from jaxretrieval.data.jsonl import iter_jsonl, read_texts, write_jsonl  # noqa: E402
from jaxretrieval.door import open_model  # noqa: E402
from jaxretrieval.errors import InputError, TrainingDiverged  # noqa: E402
from jaxretrieval.eval.evaluate import (  # noqa: E402
    check_evaluable, combined, dataset_means, evaluate_datasets, load_datasets)
from jaxretrieval.eval.mining import mine_negatives  # noqa: E402
from jaxretrieval.eval.rerank import dense_first_stage  # noqa: E402
from jaxretrieval.eval.scoring import score_records  # noqa: E402
from jaxretrieval.files import atomic_file, check_storage, is_remote, upath  # noqa: E402
from jaxretrieval.inference import encode_texts  # noqa: E402
from jaxretrieval.merge import merge_models  # noqa: E402
from jaxretrieval.losses.distill import teacher_target  # noqa: E402
from jaxretrieval.sweep.driver import run_sweep  # noqa: E402
from jaxretrieval.train.tasks import prepare_data  # noqa: E402
from jaxretrieval.train.tpu_compile import (  # noqa: E402
    compile_encode_step, compile_train_step, require_fit, slice_for)
from jaxretrieval.training import run_training  # noqa: E402


def _add_model_args(p: argparse.ArgumentParser, several: bool = False) -> None:
    if several:
        p.add_argument("--model", required=True, action="append",
                       help="model directory; repeat for several teachers (vectors normalized per model, "
                            "concatenated, normalized again)")
    else:
        p.add_argument("--model", required=True, help="sentence-transformers or Hugging Face model directory")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=None, help="override the model's max sequence length")
    p.add_argument("--pooling", default=None,
                   help="override pooling, e.g. 'cls' or 'mean' or 'lasttoken' (comma-separated to concatenate)")
    p.add_argument("--compute-dtype", choices=["float32", "bfloat16"], default=None,
                   help="dtype of the encoder's matrix products (default: float32, or what the run trained in); "
                        "parameters and output vectors stay float32")
    p.add_argument("--backend", choices=["jax", "torch"], default="jax",
                   help="engine that computes dense vectors: jax (default), or torch (the model exported to "
                        "sentence-transformers, for CPUs where oneDNN's bfloat16 kernels beat XLA's)")


def _open(args, path=None) -> Bundle:
    return open_model(args.model if path is None else path, args.pooling, args.max_length, args.compute_dtype,
                      args.backend)


def _json_line(metrics: dict) -> str:
    return json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in metrics.items()})


def cmd_encode(args) -> int:
    out = upath(args.output)
    if out.suffix != ".npy":
        raise InputError("output must end in .npy", out)
    check_storage(out, field="--output")
    weights = args.teacher_weight or None
    if weights and (len(weights) != len(args.model) or min(weights) <= 0):
        raise InputError(f"--teacher-weight needs one positive weight per --model ({len(args.model)}), got "
                         f"{weights}", "command line", field="--teacher-weight")
    texts = read_texts(args.input)
    parts = [encode_texts(_open(args, path), texts, args.kind, args.batch_size, progress=True, desc=upath(path).name)
             for path in args.model]
    vectors = parts[0] if len(parts) == 1 and not weights else np.asarray(teacher_target(parts, weights))
    vectors = vectors.astype(args.dtype)
    with atomic_file(out, "wb") as f:
        np.save(f, vectors)
    print(f"wrote {vectors.shape[0]} x {vectors.shape[1]} {args.dtype} to {out}", file=sys.stderr)
    return 0


def cmd_eval(args) -> int:
    """One JSON line of metrics; with several datasets, one line per dataset ({"dataset": NAME, ...}) and a last
    one of their means ({"dataset": "mean", ...})."""
    if args.all_dims and args.backend == "torch":
        raise InputError("--all-dims needs the jax backend (--backend torch serves the main output only)",
                         field="--backend")
    loaded = _open(args)
    paths, sts = args.data or [], args.sts or []
    first_stage = None
    if args.first_stage:
        stage_model = open_model(args.first_stage)
        first_stage = lambda name, split: dense_first_stage(stage_model, split, args.rerank_top)  # noqa: E731
    check_evaluable(loaded.kind, bool(paths), bool(sts), first_stage is not None)
    d = load_datasets(paths, sts, args.split)
    per_dataset = evaluate_datasets(loaded, d.beir, d.sts, batch_size=args.batch_size, all_dims=args.all_dims,
                                    first_stage=first_stage, rerank_top=args.rerank_top)
    if not d.several:
        print(_json_line(combined(per_dataset, several=False)))
        return 0
    for name, metrics in per_dataset.items():
        print(_json_line({"dataset": name, **metrics}))
    print(_json_line({"dataset": "mean", **dataset_means(per_dataset)}))
    return 0


def maybe_initialize_distributed() -> None:
    """Multi-host runs: every process calls jax.distributed.initialize() before touching devices. On TPU VMs it
    needs no arguments; elsewhere it reads JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID.
    Opt in with JAXRETRIEVAL_DISTRIBUTED=1 (launch/tpu_pod.sh sets it) or by setting the coordinator address."""
    if os.environ.get("JAXRETRIEVAL_DISTRIBUTED") == "1" or os.environ.get("JAX_COORDINATOR_ADDRESS"):
        kwargs = {}  # jax reads the coordinator address from the environment, but not these two
        if os.environ.get("JAX_NUM_PROCESSES"):
            kwargs["num_processes"] = int(os.environ["JAX_NUM_PROCESSES"])
        if os.environ.get("JAX_PROCESS_ID"):
            kwargs["process_id"] = int(os.environ["JAX_PROCESS_ID"])
        jax.distributed.initialize(**kwargs)


DEFAULT_COMPILATION_CACHE = "~/.cache/jaxretrieval/xla"
COMPILING_COMMANDS = ("encode", "eval", "train", "mine", "score")


def configure_compilation_cache() -> str | None:
    """On an accelerator every new shape costs seconds of compilation, and each stage, seed and `eval` of a
    recipe is a new process that compiles the same programs again; JAX's persistent cache keeps them on disk, so
    only the first run pays (benchmarks/encode_compile_time.py measures it). On by default on GPU/TPU in
    ~/.cache/jaxretrieval/xla; JAX_COMPILATION_CACHE_DIR chooses another folder, or turns it off when set empty.
    Off on CPU unless that variable asks: there a compile takes about a second. Returns the folder in use."""
    if "JAX_COMPILATION_CACHE_DIR" in os.environ:  # jax read it at import; the user's choice stands
        return os.environ["JAX_COMPILATION_CACHE_DIR"] or None
    if jax.default_backend() == "cpu":
        return None
    folder = os.path.expanduser(DEFAULT_COMPILATION_CACHE)
    jax.config.update("jax_compilation_cache_dir", folder)
    return folder


def cmd_train(args) -> int:
    cfg = load_config(args.config, args.overrides)
    summary = run_training(cfg)
    history, metric = summary["eval_history"], cfg.eval.metric
    if len(history) >= 2:
        print(f"{metric} ({summary['eval_side']}): step {history[0]['step']}: {history[0][metric]:.4f} -> step "
              f"{history[-1]['step']}: {history[-1][metric]:.4f}", file=sys.stderr)
    for side in ("test", "test_at_best"):
        if metric in (summary.get(side) or {}):
            print(f"{metric} ({side}, {', '.join(cfg.eval.data + cfg.eval.sts)} {cfg.eval.split}, evaluated once): "
                  f"{summary[side][metric]:.4f}", file=sys.stderr)
    print(json.dumps(summary))
    return 0


def cmd_merge(args) -> int:
    try:
        weights = [float(w) for w in args.weights.split(",") if w.strip()] or None
    except ValueError:
        raise InputError(f"expected comma-separated numbers, got {args.weights!r}", "--weights") from None
    out = merge_models(args.models, weights, args.out, args.format, args.dtype, args.overwrite)
    print(f"wrote {args.format} model averaging {len(args.models)} models to {out}", file=sys.stderr)
    return 0


def cmd_sweep(args) -> int:
    result = run_sweep(args.config, args.grid, args.overrides, args.part,
                       [m.strip() for m in args.metrics.split(",") if m.strip()])
    report, outcome = result["report"], result["outcome"]
    for flag in report["flags"]:
        print(f"sweep flag: {flag}", file=sys.stderr)
    print(json.dumps({"cells": outcome, "flags": report["flags"]}))
    return 130 if "stopped" in outcome.values() else 1 if "failed" in outcome.values() else 0


def cmd_config(args) -> int:
    import yaml

    cfg = load_config(args.config, args.overrides)
    if args.require_remote:
        for key, path in config_paths(cfg):
            if not is_remote(path):
                raise InputError(f"{path!r} is not a gs:// URL, and the workers of a pod see only what is in GCS: "
                                 f"upload it (gcloud storage cp -r) and name its gs:// URL", "config", field=key)
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
    if args.out:
        with atomic_file(args.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_prepare(args) -> int:
    if bool(args.config) == bool(args.model or args.data):
        raise InputError("give either --config CONFIG [key=value ...] (any task) or --model and --data (dense)",
                         "command line")
    if args.config:
        cfg = load_config(args.config, args.overrides)
    elif args.overrides or not (args.model and args.data):
        raise InputError("--model needs --data, and key=value overrides need --config", "command line")
    else:
        # output_dir is required of every config and unused here (prepare starts no run)
        cfg = load_config(None, [f"output_dir={args.out}", f"model.path={args.model}", f"data.train={args.data}",
                                 f"data.split={args.split}",
                                 f"model.max_query_length={args.max_query_length}",
                                 f"model.max_doc_length={args.max_doc_length}"])
    manifest = prepare_data(cfg, args.out, args.shards, overwrite=args.overwrite)
    print(f"wrote {manifest['examples']} {cfg.task} records ({manifest['content']}) in {len(manifest['shards'])} "
          f"shards to {args.out}: train with data.train={args.out}", file=sys.stderr)
    return 0


def cmd_compile(args) -> int:
    """The run's train step compiled for a TPU slice from this host: the report on stdout, and exit 2 with one line
    when it does not fit (after the report, so the figures are there to act on)."""
    cfg = load_config(args.config, args.overrides)
    mesh = cfg.mesh
    if args.mesh:
        sizes = dict(part.split("=", 1) for part in args.mesh.split(",") if "=" in part)
        if set(sizes) - {"data", "fsdp"} or not sizes:
            raise InputError(f"--mesh {args.mesh!r} is not data=N,fsdp=M", "command line", field="--mesh")
        mesh = MeshConfig(int(sizes.get("data", -1)), int(sizes.get("fsdp", 1)))
    built = slice_for(cfg, args.topology, mesh)  # the abstract model and task, once for both compiles
    train = compile_train_step(cfg, args.topology, dump=args.dump, built=built)
    print(train.table(args.mfu))
    require_fit(train)
    encode = compile_encode_step(cfg, args.topology, dump=args.dump, built=built)
    print("\n" + encode.table(args.mfu))
    require_fit(encode)
    return 0


def cmd_export(args) -> int:
    check_export_args(args.format, args.dtype, args.out, args.overwrite)  # before the model is loaded
    out = export(open_model(args.checkpoint), args.out, args.format, args.dtype, overwrite=args.overwrite,
                 allow_nonfinite=args.allow_nonfinite)
    print(f"wrote {args.format} model to {out}", file=sys.stderr)
    return 0


def cmd_mine(args) -> int:
    if args.top_k < 1 or args.skip_top < 0:
        raise InputError("--top-k must be >= 1 and --skip-top >= 0", "command line")
    check_storage(args.out, field="--out")
    records = mine_negatives(_open(args), args.data, args.top_k, args.skip_top, args.max_score_ratio,
                             args.num_negatives, args.split, args.batch_size)
    write_jsonl(args.out, records)
    counts = [len(r["neg"]) for r in records]
    print(f"wrote {len(records)} queries to {args.out}: {min(counts)}-{max(counts)} negatives each", file=sys.stderr)
    return 0


def cmd_score(args) -> int:
    check_storage(args.out, field="--out")
    records = []
    for lineno, obj in iter_jsonl(args.input):
        for key in ("query", "pos"):
            if key not in obj:
                raise InputError(f"missing field {key!r}", args.input, lineno, field=key)
        records.append(obj)
    scored = score_records(_open(args), records, args.batch_size)
    write_jsonl(args.out, scored)
    print(f"scored {len(scored)} records -> {args.out}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxretrieval", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("encode", help="encode texts to an .npy array (one row per input line)")
    _add_model_args(p, several=True)
    p.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    p.add_argument("--input", required=True, help=".txt (one text per line), .jsonl (field 'text', optional 'title'), "
                   "or .jsonl {query, pos, neg} (flattened: each distinct text once)")
    p.add_argument("--output", required=True, help="output .npy path")
    p.add_argument("--kind", choices=["query", "doc"], default="doc", help="which prompt to prepend")
    p.add_argument("--teacher-weight", type=float, action="append",
                   help="one per --model, in order (as distill.teacher_weights): each model's normalized vectors "
                        "are scaled by the weight's square root before the concatenation")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("eval", help="retrieval metrics on a BEIR directory and/or STS Spearman (one JSON line on "
                                    "stdout); --model may be a run directory or checkpoint")
    _add_model_args(p)
    p.add_argument("--data", action="append",
                   help="BEIR directory (corpus.jsonl, queries.jsonl, qrels/); repeat for several datasets")
    p.add_argument("--split", default="test")
    p.add_argument("--sts", action="append",
                   help="STS-B style file: adds sts_spearman (cosine vs gold, Spearman); repeat for several")
    p.add_argument("--all-dims", action="store_true", help="also report every Matryoshka dimension (dim<D>/...)")
    p.add_argument("--first-stage", help="rerankers: dense model or run whose top-k is reranked")
    p.add_argument("--rerank-top", type=int, default=100, help="rerankers: candidates per query to rescore")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("prepare", help="tokenize training data once into TFRecord shards that training streams "
                                       "(data larger than RAM, multi-host runs)")
    p.add_argument("--config", help="the training config: its task, model, data.train and lengths decide what is "
                                    "written (every task); or give --model and --data (dense)")
    p.add_argument("overrides", nargs="*", help="with --config: dotted key=value overrides")
    p.add_argument("--model", help="the model whose tokenizer and prompts training will use")
    p.add_argument("--data", help="jsonl {query, pos, neg, prompt?} file or BEIR directory")
    p.add_argument("--split", default="train", help="BEIR qrels split")
    p.add_argument("--out", required=True, help="output directory (data.train of the training config)")
    p.add_argument("--shards", type=int, default=16, help="number of shard files (>= the number of hosts)")
    p.add_argument("--max-query-length", type=int, default=64)
    p.add_argument("--max-doc-length", type=int, default=256)
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    p.set_defaults(func=cmd_prepare, pooling=None, max_length=None)

    p = sub.add_parser("mine", help="mine hard negatives with a dense model into {query, pos, neg} jsonl")
    _add_model_args(p)
    p.add_argument("--data", required=True, help="BEIR directory (qrels split + corpus) or {query, pos, neg} jsonl")
    p.add_argument("--split", default="train")
    p.add_argument("--out", required=True, help="output .jsonl")
    p.add_argument("--top-k", type=int, default=50, help="candidates kept after skipping (before the ratio filter)")
    p.add_argument("--skip-top", type=int, default=0, help="drop this many best non-positive hits first")
    p.add_argument("--max-score-ratio", type=float, default=None,
                   help="drop hits scoring above R x the query's weakest positive (likely false negatives)")
    p.add_argument("--num-negatives", type=int, default=None, help="keep at most this many per query")
    p.set_defaults(func=cmd_mine)

    p = sub.add_parser("score", help="add teacher scores (pos_scores, neg_scores) to {query, pos, neg} jsonl")
    _add_model_args(p)
    p.add_argument("--input", required=True, help="{query, pos, neg} jsonl")
    p.add_argument("--out", required=True, help="output jsonl (records with pos_scores and neg_scores)")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("export", help="write a trained model as a sentence-transformers or Hugging Face directory")
    p.add_argument("--checkpoint", required=True,
                   help="run directory (newest checkpoint), RUN/checkpoints/STEP, or a model directory")
    p.add_argument("--out", required=True, help="output directory (must be empty unless --overwrite)")
    p.add_argument("--format", default="sentence-transformers",
                   help="sentence-transformers | hf (dense); pylate | hf (ColBERT); cross-encoder (reranker)")
    p.add_argument("--dtype", default="float32", help="float32 | bfloat16")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.add_argument("--allow-nonfinite", action="store_true",
                   help="export even if some weights are NaN or Inf (by default that is an error)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("config", help="check a config and print it resolved (its base: files and overrides applied)")
    p.add_argument("config", help="YAML config")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides")
    p.add_argument("--out", help="write the resolved config here (local or gs://) instead of printing it")
    p.add_argument("--require-remote", action="store_true",
                   help="every path the config names must be gs:// (what the workers of a pod can read)")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("compile", help="compile the config's train step for a TPU slice from this host (libtpu): "
                                       "per-chip memory against HBM, FLOPs, implied step time, collectives")
    p.add_argument("config", help="YAML config of the run")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides")
    p.add_argument("--topology", required=True, help="TPU slice, e.g. v5e:2x2, v5e:4x4, v5p:2x2x1, v6e:2x4")
    p.add_argument("--mesh", help="data=N,fsdp=M over the slice's devices (default: the config's mesh)")
    p.add_argument("--mfu", type=float, default=0.4, help="model FLOPs utilization for the second step time")
    p.add_argument("--dump", help="folder for the compiled HLO and memory report")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("merge", help="average the parameters of compatible models (runs, checkpoints or model "
                       "directories) and export the result")
    p.add_argument("models", nargs="+", help="two or more models of one architecture")
    p.add_argument("--weights", default="", help="comma-separated weights, one per model (default: equal)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--format", default="sentence-transformers",
                   help="sentence-transformers | hf (dense); pylate | hf (ColBERT); cross-encoder (reranker)")
    p.add_argument("--dtype", default="float32", help="float32 | bfloat16")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("sweep", help="train every cell of a grid as its own run in OUT/cells/NAME (resumable: "
                       "finished cells are skipped), then write OUT/report.{md,json,png} with seed and "
                       "learning-rate spreads")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", help="key=value overrides shared by every cell (output_dir=OUT)")
    p.add_argument("--grid", action="append", required=True, metavar="KEY=V1,V2",
                   help="one axis of the grid, e.g. seed=0,1,2,3,4 or learning_rate=x/3,x,x*3 (x: the config's "
                        "value); repeat for more axes")
    p.add_argument("--part", default="1/1", metavar="K/N",
                   help="run only every N-th cell starting at the K-th (N launches share one sweep)")
    p.add_argument("--metrics", default="", help="comma-separated metrics for the report (default eval.metric)")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("train", help="train (or resume) from a config file with key=value overrides")
    p.add_argument("config", help="YAML config, e.g. configs/quickstart.yaml")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. steps=100 loss.temperature=0.02")
    p.set_defaults(func=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    if args.command == "train":
        maybe_initialize_distributed()  # before anything touches the devices
    if args.command in COMPILING_COMMANDS:  # the check starts the backend, which `prepare` and `export` never need
        configure_compilation_cache()
    try:
        return args.func(args)
    except InputError as e:
        print(f"jaxretrieval {args.command}: error: {e}", file=sys.stderr)
        return 2
    except TrainingDiverged as e:
        print(f"jaxretrieval {args.command}: diverged: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:  # before training starts (a run in progress stops at a step boundary instead)
        print(f"jaxretrieval {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
