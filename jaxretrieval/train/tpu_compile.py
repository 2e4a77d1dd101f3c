"""Ahead-of-time compile of a run's train step for a TPU slice that is not here, from a CPU host.

With libtpu installed, XLA describes any TPU topology (`jax.experimental.topologies`) and compiles for it without
the hardware, as MaxText's train_compile checks pod configs before booking them. The step compiled is the run's
own (train/loop.make_train_step: the task's loss, GradCache, LoRA, FSDP shardings, the non-finite guard) over
abstract parameters, optimizer state and a batch at the configured maximum lengths: nothing is materialized and
no weights are read, so a directory holding only config.json and a tokenizer describes a model too big for here.

The report is per chip: argument / output / temp bytes against the chip's HBM, FLOPs per step, the step time and
examples/s the chip's peak bf16 rate would give at 100% and at a stated MFU, and the collectives in the HLO.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxretrieval.config import SCORE_LOSSES, MeshConfig, TrainConfig
from jaxretrieval.convert.hf_format import shapes_only
from jaxretrieval.convert.st_format import load_embedder
from jaxretrieval.errors import InputError
from jaxretrieval.files import atomic_file, upath
from jaxretrieval.train.colbert_task import ColBERTTask, colbert_tokenization
from jaxretrieval.train.dense_task import DenseTask, dense_tokenization
from jaxretrieval.train.distill_task import DistillTask, distill_tokenization
from jaxretrieval.train.loop import make_train_step, split_trainable
from jaxretrieval.train.mesh import batch_sharding, make_mesh, replicated, tree_shardings
from jaxretrieval.train.model_setup import build_model
from jaxretrieval.train.optimizer import make_optimizer
from jaxretrieval.train.reranker_task import RerankerTask

GIB = 1024 ** 3
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Chip:
    name: str  # as jax's device_kind says it
    hbm_bytes: int
    peak_bf16_flops: float
    ici: str


# Per chip, from Google Cloud's TPU system-architecture pages (cloud.google.com/tpu/docs/v4, v5e, v5p, v6e).
# HBM is given there in GB for v5e/v5p/v6e and GiB for v4; GB is taken as GiB, the safe side for "fits".
CHIPS = {
    "v4": Chip("TPU v4", 32 * GIB, 275e12, "3D torus"),
    "v5e": Chip("TPU v5 lite", 16 * GIB, 197e12, "2D torus"),
    "v5p": Chip("TPU v5", 95 * GIB, 459e12, "3D torus"),
    "v6e": Chip("TPU v6 lite", 32 * GIB, 918e12, "2D torus"),
}

COLLECTIVES = ("all-gather", "reduce-scatter", "all-reduce", "all-to-all", "collective-permute")
_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "bf16": 2, "f16": 2, "s32": 4, "u32": 4, "f32": 4,
                "s64": 8, "u64": 8, "f64": 8}


def tpu_devices(topology: str) -> tuple[Chip, list, int]:
    """(chip, the slice's devices, chips in it) of a topology name such as v5e:2x2 or v5p:2x2x1."""
    version, _, shape = topology.partition(":")
    if version not in CHIPS or not re.fullmatch(r"\d+(x\d+)+", shape):
        raise InputError(f"topology {topology!r} is not VERSION:AxB[xC] with VERSION one of {', '.join(CHIPS)}",
                         "command line", field="--topology")
    # libtpu must look at nothing but this host: no cloud metadata server, no other workers
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
    os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
    os.environ.setdefault("TPU_WORKER_ID", "0")
    # a compile-only client drives no chip: several processes may hold one (libtpu otherwise takes a lockfile)
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    try:
        from jax.experimental import topologies

        devices = topologies.get_topology_desc(platform="tpu", topology_name=topology).devices
    except Exception as e:  # no libtpu, or a shape the version does not have
        raise InputError(f"cannot describe TPU topology {topology!r} ({str(e).splitlines()[0][:200]}); "
                         f"`pip install libtpu` gives the TPU compiler", "command line", field="--topology") from None
    return CHIPS[version], list(devices), math.prod(int(x) for x in shape.split("x"))


def batch_spec(cfg: TrainConfig, loaded, teacher_dims: list[int]) -> dict[str, jax.ShapeDtypeStruct]:
    """The global batch of the config's task at its maximum lengths, as the task's batch sources build it (the
    keys and dtypes are checked against a real source in tests/train/test_tpu_compile.py)."""
    b, i32, f32 = cfg.batch_size, jnp.int32, jnp.float32
    s = lambda *shape, dtype=i32: jax.ShapeDtypeStruct(shape, dtype)  # noqa: E731
    if cfg.task in ("dense", "colbert"):
        # the lengths the task tokenizes to, as `prepare` records them
        lengths = (colbert_tokenization(loaded) if cfg.task == "colbert" else dense_tokenization(cfg, loaded)).settings
        q, d = lengths["max_query_length"], lengths["max_doc_length"]
        n = cfg.data.num_negatives
        out = {"query_ids": s(b, q), "query_mask": s(b, q), "pos_ids": s(b, d), "pos_mask": s(b, d),
               "neg_ids": s(b, n, d), "neg_mask": s(b, n, d), "query_text": s(b), "pos_doc": s(b), "neg_doc": s(b, n)}
        scored = cfg.loss.name in SCORE_LOSSES if cfg.task == "dense" else cfg.colbert.loss != "contrastive"
        if scored:
            out.update(pos_score=s(b, dtype=f32), neg_scores=s(b, n, dtype=f32))
        return out
    if cfg.task == "reranker":
        r = cfg.reranker
        g = r.group_size + r.in_batch_negatives
        out = {"ids": s(b, g, r.max_length), "mask": s(b, g, r.max_length), "types": s(b, g, r.max_length)}
        if r.loss != "listwise":
            out["scores"] = s(b, g, dtype=f32)
        return out
    length = distill_tokenization(cfg, loaded).settings["max_length"]
    out = {"ids": s(b, length), "mask": s(b, length)}
    if cfg.distill.teacher_vectors:
        out.update({f"teacher_vectors{k}": s(b, dim, dtype=f32) for k, dim in enumerate(teacher_dims)})
    else:
        for k in range(len(cfg.distill.teachers)):
            out.update({f"teacher{k}_ids": s(b, length), f"teacher{k}_mask": s(b, length)})
    return out


def compile_task(cfg: TrainConfig, loaded):
    """The config's task object without its data (a compile needs the loss, not the batches), with teacher
    parameters as shapes."""
    if cfg.task == "dense":
        return DenseTask(cfg, None, main_dim=loaded.model.dim), []
    if cfg.task == "colbert":
        tok = loaded.tokenizer
        return ColBERTTask(cfg, None, tok.attend_to_expansion_tokens, tok.skiplist_ids), []
    if cfg.task == "reranker":
        return RerankerTask(cfg, None), []
    d = cfg.distill
    graphdefs, teacher_params, dims = [], {}, []
    if d.teacher_vectors:
        dims = [int(np.load(str(p), mmap_mode="r").shape[1]) for p in d.teacher_vectors]
    for k, path in enumerate(d.teachers):
        teacher = load_embedder(path)
        graphdef, params = nnx.split(teacher.model)
        graphdefs.append(graphdef)
        teacher_params[f"teacher{k}"] = params
        dims.append(teacher.model.dim)
    task = DistillTask.assembled(cfg, loaded, None, teacher_params, graphdefs, sum(dims), len(d.teacher_vectors))
    return task, dims


def _abstract(tree, shardings):
    return jax.tree.map(lambda x, sh: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sh), tree, shardings)


@dataclasses.dataclass
class CompileReport:
    what: str  # "train step" or "encode step"
    topology: str
    chip: Chip
    devices: int
    chips: int
    mesh: dict[str, int]
    batch_size: int
    argument_bytes: int  # per device
    output_bytes: int
    alias_bytes: int
    temp_bytes: int
    code_bytes: int
    flops: float  # per device, per step
    collectives: dict[str, tuple[int, int]] | None  # op -> (count, result bytes) in the per-device HLO; None:
    # XLA could not print the compiled program
    parameters: int
    param_layout: dict[str, tuple[tuple, tuple[int, ...]]]  # trained parameter path -> (partition spec, shape)
    loops: bool = False  # GradCache in several chunks: XLA's FLOP count takes its loop body (one chunk) once
    rows: str = "examples"  # what batch_size counts

    @property
    def hbm_per_device(self) -> int:
        return self.chip.hbm_bytes * self.chips // self.devices

    @property
    def total_bytes(self) -> int:
        """What one device holds at the step's peak: its arguments, outputs not aliased to them, temporaries, code."""
        return self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes + self.code_bytes

    @property
    def fits(self) -> bool:
        return self.total_bytes <= self.hbm_per_device

    def step_seconds(self, mfu: float = 1.0) -> float:
        peak = self.chip.peak_bf16_flops * self.chips / self.devices
        return self.flops / (peak * mfu)

    def table(self, mfu: float) -> str:
        g = lambda n: f"{n / GIB:.3f} GiB"  # noqa: E731
        rows = [("compiled", self.what),
                ("topology", f"{self.topology}: {self.chips} chips ({self.chip.name}, {self.chip.ici}), "
                             f"{self.devices} devices"),
                ("mesh", ", ".join(f"{k}={v}" for k, v in self.mesh.items())),
                ("parameters", f"{self.parameters:,}"), ("global batch", f"{self.batch_size} {self.rows}"),
                ("arguments / device", g(self.argument_bytes)), ("outputs / device", g(self.output_bytes)),
                ("aliased (donated) / device", g(self.alias_bytes)), ("temporaries / device", g(self.temp_bytes)),
                ("code / device", g(self.code_bytes)),
                ("total / device", f"{g(self.total_bytes)} of {g(self.hbm_per_device)} HBM "
                                   f"({100 * self.total_bytes / self.hbm_per_device:.1f}%)"),
                ("FLOPs / device / step", f"{self.flops:.4g}" + (" (GradCache's chunk loop counted once by XLA: a "
                                                                 "lower bound, and the times below too)"
                                                                 if self.loops else ""))]
        for label, m in (("at 100% of peak bf16", 1.0), (f"at {100 * mfu:g}% MFU", mfu)):
            t = self.step_seconds(m)
            shown = f"{t * 1e3:.2f} ms" if t >= 1e-3 else f"{t * 1e6:.2f} us"
            rows.append((f"step time {label}", f"{shown}, {self.batch_size / t:,.0f} {self.rows}/s"))
        if self.collectives is None:
            rows.append(("collectives", "not available: XLA could not print the compiled program"))
        for op, (count, size) in sorted((self.collectives or {}).items()):
            rows.append((op, f"{count} ops, {size / 2 ** 20:.2f} MiB"))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def hlo_collectives(hlo: str) -> dict[str, tuple[int, int]]:
    """{op: (count, bytes of their results)} for the collectives of an HLO module's text."""
    out: dict[str, list[int]] = {}
    pattern = re.compile(r"=\s*(\(?[^=]*?\)?)\s+(" + "|".join(COLLECTIVES) + r")(-start)?\(")
    for line in hlo.splitlines():
        m = pattern.search(line)
        if not m or "-done" in line.split("=")[1][:40]:
            continue
        size = sum(_DTYPE_BYTES.get(dt, 4) * math.prod(int(x) for x in dims.split(",") if x)
                   for dt, dims in re.findall(r"([a-z]+\d*)\[([\d,]*)\]", m.group(1)))
        count, total = out.setdefault(m.group(2), [0, 0])
        out[m.group(2)] = [count + 1, total + size]
    return {k: (v[0], v[1]) for k, v in out.items()}


def slice_for(cfg: TrainConfig, topology: str, mesh: MeshConfig | None = None) -> tuple:
    """What both compiles start from, built once: (chip, devices, chips, mesh, abstract bundle, task, teacher
    dims) of the config on the topology."""
    chip, devices, chips = tpu_devices(topology)
    tpu_mesh = make_mesh(mesh or cfg.mesh, devices)
    dp = tpu_mesh.shape["data"] * tpu_mesh.shape["fsdp"]
    if cfg.batch_size % dp:
        raise InputError(f"batch_size {cfg.batch_size} is not divisible by the data-parallel size {dp} of the "
                         f"{topology} mesh", "config", field="batch_size")
    with shapes_only():
        loaded = build_model(cfg, initialize=False)
        task, teacher_dims = compile_task(cfg, loaded)
    return chip, devices, chips, tpu_mesh, loaded, task, teacher_dims


def _compiled(lowered, topology: str, tpu_mesh, dump: str | None, name: str):
    """(compiled, memory, flops, hlo), with XLA's own out-of-memory refusal as the one-line error."""
    try:
        compiled = lowered.compile()
    except jax.errors.JaxRuntimeError as e:  # XLA refuses a program whose temporaries exceed the HBM
        if "RESOURCE_EXHAUSTED" not in str(e):
            raise
        why = next((line for line in str(e).splitlines() if "memory" in line.lower()), str(e).splitlines()[0])
        raise InputError(f"does not fit on {topology} (mesh {dict(tpu_mesh.shape)}): {why.strip()[:300]}",
                         "config", field="batch_size") from None
    memory = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    try:
        hlo = compiled.as_text()
    except jax.errors.JaxRuntimeError as e:  # seen with libtpu 0.0.52: a compiled program whose text fails a check
        hlo = ""
        log.warning("the compiled program's HLO text is not available (%s): no collectives reported",
                    str(e).splitlines()[0][:200])
    if dump:
        folder = upath(dump)
        folder.mkdir(parents=True, exist_ok=True)
        if hlo:
            with atomic_file(folder / f"{name}.hlo.txt", "w") as f:
                f.write(hlo)
        with atomic_file(folder / f"{name}.memory.txt", "w") as f:
            f.write(str(memory) + "\n")
    return compiled, memory, float(cost.get("flops", 0.0)), hlo


def _report(what, topology, chip, devices, chips, tpu_mesh, rows, memory, flops, hlo, params, frozen, param_sh,
            unit="examples", loops=False) -> CompileReport:
    count = sum(math.prod(np.shape(x)) for x in jax.tree.leaves(params) + jax.tree.leaves(frozen))
    return CompileReport(what, topology, chip, len(devices), chips, dict(tpu_mesh.shape), rows,
                         memory.argument_size_in_bytes, memory.output_size_in_bytes, memory.alias_size_in_bytes,
                         memory.temp_size_in_bytes, memory.generated_code_size_in_bytes, flops,
                         hlo_collectives(hlo) if hlo else None,
                         int(count), _layout(params, param_sh), loops=loops, rows=unit)


def compile_train_step(cfg: TrainConfig, topology: str, mesh: MeshConfig | None = None, dump: str | None = None,
                       built: tuple | None = None) -> CompileReport:
    """Compile the config's train step for `topology` (e.g. v5e:2x2) over `mesh` (default: the config's)."""
    chip, devices, chips, tpu_mesh, loaded, task, teacher_dims = built or slice_for(cfg, topology, mesh)
    graphdef, params, frozen = split_trainable(loaded.model, cfg)
    optimizer = make_optimizer(cfg.optimizer, cfg.learning_rate, max(cfg.steps, 1000))
    opt_state = jax.eval_shape(optimizer.tx.init, params)
    param_sh, frozen_sh, opt_sh = (tree_shardings(t, tpu_mesh) for t in (params, frozen, opt_state))
    counters = ("step", "bad_in_a_row", "skipped_steps")
    state_sh = {"params": param_sh, "frozen": frozen_sh, "opt_state": opt_sh,
                **{c: replicated(tpu_mesh) for c in counters}}
    scalar = jnp.zeros((), jnp.int32)
    state = _abstract({"params": params, "frozen": frozen, "opt_state": opt_state, **{c: scalar for c in counters}},
                      state_sh)
    batch = batch_spec(cfg, loaded, teacher_dims)
    batch_sh = {k: batch_sharding(tpu_mesh, len(v.shape)) for k, v in batch.items()}
    batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=batch_sh[k]) for k, v in batch.items()}
    teacher_sh = tree_shardings(task.teacher_params, tpu_mesh)
    teachers = _abstract(task.teacher_params, teacher_sh)
    step = make_train_step(graphdef, optimizer, cfg, task, state_sh, batch_sh, teacher_sh, tpu_mesh)
    _, memory, flops, hlo = _compiled(step.lower(state, batch, teachers), topology, tpu_mesh, dump, "train_step")
    chunked = 0 < cfg.grad_cache_chunk < cfg.batch_size
    return _report("train step", topology, chip, devices, chips, tpu_mesh, cfg.batch_size, memory, flops, hlo,
                   params, frozen, param_sh, loops=chunked)


def compile_encode_step(cfg: TrainConfig, topology: str, mesh: MeshConfig | None = None, dump: str | None = None,
                        built: tuple | None = None) -> CompileReport:
    """Compile the encoding that evaluation runs: the task's longest stream (documents, or reranked pairs) for
    eval.batch_size rows (rounded up to the data-parallel size), parameters sharded as in training."""
    chip, devices, chips, tpu_mesh, loaded, task, teacher_dims = built or slice_for(cfg, topology, mesh)
    graphdef, params, frozen = split_trainable(loaded.model, cfg)
    param_sh, frozen_sh = tree_shardings(params, tpu_mesh), tree_shardings(frozen, tpu_mesh)
    batch = batch_spec(cfg, loaded, teacher_dims)
    streams = jax.eval_shape(task.streams, batch)
    name = max(streams, key=lambda n: math.prod(next(iter(streams[n].values())).shape))
    dp = tpu_mesh.shape["data"] * tpu_mesh.shape["fsdp"]
    rows = -(-cfg.eval.batch_size // dp) * dp
    inputs = {k: jax.ShapeDtypeStruct((rows, *v.shape[1:]), v.dtype, sharding=batch_sharding(tpu_mesh, v.ndim))
              for k, v in streams[name].items()}
    encode = jax.jit(lambda p, f, x: task.encode(nnx.merge(graphdef, p, f), name, x, None))
    lowered = encode.lower(_abstract(params, param_sh), _abstract(frozen, frozen_sh), inputs)
    _, memory, flops, hlo = _compiled(lowered, topology, tpu_mesh, dump, "encode_step")
    return _report(f"encode step ({name} stream)", topology, chip, devices, chips, tpu_mesh, rows, memory, flops,
                   hlo, params, frozen, param_sh, unit="texts" if name != "pairs" else "pairs")


def _layout(params, shardings) -> dict[str, tuple[tuple, tuple[int, ...]]]:
    flat = jax.tree_util.tree_flatten_with_path(shardings)[0]
    return {jax.tree_util.keystr(k): (tuple(sh.spec), tuple(np.shape(v)))
            for (k, sh), v in zip(flat, jax.tree.leaves(params))}


def require_fit(report: CompileReport) -> None:
    """The one line for a run that cannot fit its slice."""
    if not report.fits:
        short = (report.total_bytes - report.hbm_per_device) / GIB
        raise InputError(f"does not fit by {short:.2f} GiB: the step needs {report.total_bytes / GIB:.2f} GiB per "
                         f"device of {report.hbm_per_device / GIB:.2f} GiB HBM on {report.topology} (use more chips, "
                         f"mesh.fsdp, grad_cache_chunk, a smaller batch or bf16)", "config", field="batch_size")
