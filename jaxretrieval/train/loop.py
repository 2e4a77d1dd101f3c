"""The train loop: one jit-compiled, sharded step over a device mesh, fed by the tf.data pipeline, with
Orbax checkpoints (exact resume), periodic evaluation, and logs. Everything that can be wrong with the input is
checked before the first step.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import yaml
from flax import nnx

from jaxretrieval.config import TrainConfig, config_to_dict
from jaxretrieval.convert.st_import import LoadedEmbedder
from jaxretrieval.data.beir import load_beir
from jaxretrieval.data.pipeline import iterate
from jaxretrieval.errors import InputError
from jaxretrieval.eval.retrieval import evaluate_dense
from jaxretrieval.eval.sts import evaluate_sts
from jaxretrieval.models.params import param_name, select_params
from jaxretrieval.train.checkpoint import Checkpoints, checkpoint_steps
from jaxretrieval.train.dense_task import DenseTask
from jaxretrieval.train.grad_cache import grad_cache_value_and_grad
from jaxretrieval.train.distill_task import DistillTask
from jaxretrieval.train.colbert_task import ColBERTTask
from jaxretrieval.train.reranker_task import RerankerTask
from jaxretrieval.train.model_setup import build_model
from jaxretrieval.train.mesh import batch_sharding, data_parallel_size, make_mesh, replicated, tree_shardings
from jaxretrieval.train.optimizer import make_optimizer
from jaxretrieval.train.run_log import RunLog

TASKS = {"dense": DenseTask, "distill": DistillTask, "colbert": ColBERTTask, "reranker": RerankerTask}


@dataclasses.dataclass
class Prepared:
    """Everything built and validated before the first step."""

    cfg: TrainConfig
    loaded: LoadedEmbedder  # or LoadedColBERT, LoadedReranker (see model_setup.build_model)
    task: Any  # one of TASKS: .source, .aux, .loss(model, batch, aux, key)
    total_steps: int
    mesh: jax.sharding.Mesh
    eval_data: Any

    @property
    def source(self):
        return self.task.source


def _check_eval_metric(cfg: TrainConfig, dims: tuple[int, ...]) -> None:
    names = (["ndcg@10", "recall@100", "mrr@10"] if cfg.eval.data else []) + (["sts_spearman"] if cfg.eval.sts else [])
    names += [f"dim{d}/{n}" for d in dims[1:] for n in list(names)]
    if cfg.task == "reranker" and cfg.eval.data and not cfg.reranker.first_stage:
        raise InputError("evaluating a reranker needs reranker.first_stage (a dense model or run whose top-k it "
                         "reranks)", "config", field="reranker.first_stage")
    if names and cfg.eval.metric not in names:
        raise InputError(f"eval.metric {cfg.eval.metric!r} is not computed by this eval; choose from {names}",
                         "config", field="eval.metric")


def prepare(cfg: TrainConfig, resuming: bool = False) -> Prepared:
    """Everything a run needs before its first step. resuming: a checkpoint will replace every parameter, so
    init_from and data-dependent head initialization (a forward pass over training texts) are skipped."""
    eval_data = load_beir(cfg.eval.data, cfg.eval.split) if cfg.eval.data else None
    mesh = make_mesh(cfg.mesh)
    dp = data_parallel_size(mesh)
    if cfg.batch_size % dp:
        raise InputError(f"batch_size {cfg.batch_size} is not divisible by the data-parallel size {dp} "
                         f"(mesh data={mesh.shape['data']} x fsdp={mesh.shape['fsdp']})", "config", field="batch_size")
    loaded = build_model(cfg, initialize=not resuming)
    _check_eval_metric(cfg, getattr(loaded.model, "dims", ()))
    task = TASKS[cfg.task].build(cfg, loaded)
    if cfg.grad_cache_chunk and not hasattr(task, "streams"):
        raise InputError(f"grad_cache_chunk is not supported by task {cfg.task} yet", "config",
                         field="grad_cache_chunk")
    total = cfg.steps or int(cfg.epochs * task.source.steps_per_epoch)
    if total <= 0:
        raise InputError("no steps to run (set steps or epochs)", "config", field="steps")
    return Prepared(cfg, loaded, task, total, mesh, eval_data)


def make_train_step(graphdef, tx, schedule, cfg: TrainConfig, task, state_shardings, batch_shardings,
                    aux_shardings, mesh):
    base_key = jax.random.key(cfg.seed)

    def step_fn(state, batch, aux):
        step = state["step"]
        key = jax.random.fold_in(base_key, step) if cfg.model.dropout else None

        def loss_of(params):
            return task.loss(nnx.merge(graphdef, params, state["frozen"]), batch, aux, key)

        if cfg.grad_cache_chunk:
            encode = lambda p, name, inputs, k: task.encode(nnx.merge(graphdef, p, state["frozen"]), name, inputs, k)  # noqa: E731
            (loss, task_metrics), grads = grad_cache_value_and_grad(
                encode, lambda reps: task.loss_from_reps(reps, batch, aux), state["params"], task.streams(batch),
                cfg.grad_cache_chunk, key)
        else:
            (loss, task_metrics), grads = jax.value_and_grad(loss_of, has_aux=True)(state["params"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "learning_rate": schedule(step),
                   **task_metrics}
        return {**state, "params": params, "opt_state": opt_state, "step": step + 1}, metrics

    return jax.jit(step_fn, in_shardings=(state_shardings, batch_shardings, aux_shardings),
                   out_shardings=(state_shardings, replicated(mesh)), donate_argnums=0)


def global_batch(local: dict[str, np.ndarray], shardings: dict[str, Any]) -> dict[str, jax.Array]:
    return {k: jax.make_array_from_process_local_data(shardings[k], v) for k, v in local.items()}


def split_trainable(model, cfg: TrainConfig):
    """(graphdef, trainable params, frozen params) by optimizer.trainable; frozen ones get no gradient, no
    update and no optimizer state."""
    chosen = select_params(model, cfg.optimizer.trainable)
    is_trainable = lambda path, _: param_name(path) in chosen  # noqa: E731
    return nnx.split(model, is_trainable, ...)


def init_train_state(prep: Prepared):
    """Parameters and optimizer state placed on the mesh, with their shardings and the batch shardings.
    Returns (graphdef, state, state shardings, batch shardings, (optimizer, schedule))."""
    cfg, mesh, source = prep.cfg, prep.mesh, prep.source
    graphdef, params, frozen = split_trainable(prep.loaded.model, cfg)
    tx, schedule = make_optimizer(cfg.optimizer, cfg.learning_rate, prep.total_steps)
    param_sh, frozen_sh = tree_shardings(params, mesh), tree_shardings(frozen, mesh)
    params, frozen = jax.device_put(params, param_sh), jax.device_put(frozen, frozen_sh)
    opt_state = jax.jit(tx.init)(params)
    opt_sh = tree_shardings(opt_state, mesh)
    # Every leaf is placed with its final sharding up front: an unplaced leaf would make the second call of the
    # train step miss the jit cache and compile again.
    state = {"params": params, "frozen": frozen, "opt_state": jax.device_put(opt_state, opt_sh),
             "step": jax.device_put(jnp.zeros((), jnp.int32), replicated(mesh))}
    state_sh = {"params": param_sh, "frozen": frozen_sh, "opt_state": opt_sh, "step": replicated(mesh)}
    batch_sh = {k: batch_sharding(mesh, v.ndim) for k, v in source.batch(0).items()}
    return graphdef, state, state_sh, batch_sh, (tx, schedule)


def train_step_for(prep: Prepared, graphdef, state_sh, batch_sh, schedule_tx):
    """The jitted step of this task, and the task's `aux` (online teachers' parameters) placed on the mesh.
    Returns (step(state, batch, aux) -> (state, metrics), aux)."""
    aux_sh = tree_shardings(prep.task.aux, prep.mesh)
    aux = jax.device_put(prep.task.aux, aux_sh)
    return make_train_step(graphdef, *schedule_tx, prep.cfg, prep.task, state_sh, batch_sh, aux_sh, prep.mesh), aux


def train(cfg: TrainConfig, stop_at_step: int | None = None) -> dict[str, Any]:
    """Run (or resume) training. Returns a summary: final step, last loss, last and best eval metrics.

    stop_at_step ends the run early as a preemption would (a checkpoint is written there), while the schedule
    still follows the configured total: the resumed run must continue exactly as if never stopped."""
    out = Path(cfg.output_dir)
    saved = checkpoint_steps(out)  # read without writing: bad input must fail below with nothing created
    latest = saved[-1] if saved else None
    prep = prepare(cfg, resuming=latest is not None)
    out.mkdir(parents=True, exist_ok=True)
    source = prep.source
    graphdef, state, state_sh, batch_sh, schedule_tx = init_train_state(prep)
    checkpoints = Checkpoints(out, cfg.keep_checkpoints, cfg.save_every)
    meta: dict[str, Any] = {"config": config_to_dict(cfg), "data": source.fingerprint(), "best": None}
    start = 0
    if latest is not None:
        state, saved_meta = checkpoints.restore(latest, state, state_sh)
        if saved_meta.get("data") != meta["data"]:
            raise InputError(f"checkpoint at step {latest} was trained on different data {saved_meta.get('data')}; "
                             f"use a new output_dir", checkpoints.directory)
        meta["best"] = saved_meta.get("best")
        start = int(state["step"])
        print(f"resuming from step {start} ({checkpoints.directory})", file=sys.stderr)
    if jax.process_index() == 0:
        (out / "config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))

    train_step, aux = train_step_for(prep, graphdef, state_sh, batch_sh, schedule_tx)
    run_log = RunLog(out, start, prep.total_steps)
    summary: dict[str, Any] = {"step": start, "loss": None, "eval": None, "eval_history": []}

    evaluates = prep.eval_data is not None or bool(cfg.eval.sts)

    @functools.cache
    def first_stage_run():  # the reranker's candidates: computed once per run
        from jaxretrieval.cli import load_any_model
        from jaxretrieval.eval.rerank import dense_first_stage

        return dense_first_stage(load_any_model(cfg.reranker.first_stage), prep.eval_data, cfg.reranker.rerank_top)

    def run_eval(step: int) -> None:
        if not evaluates:
            return
        model = nnx.merge(graphdef, state["params"], state["frozen"])
        loaded = dataclasses.replace(prep.loaded, model=model)
        all_dims = len(getattr(model, "dims", ())) > 1
        metrics = {}
        if cfg.task == "reranker" and prep.eval_data is not None:
            from jaxretrieval.eval.rerank import evaluate_reranker

            metrics.update(evaluate_reranker(loaded, prep.eval_data, first_stage_run(), cfg.reranker.rerank_top,
                                             cfg.eval.batch_size))
        elif cfg.task == "colbert" and prep.eval_data is not None:
            from jaxretrieval.eval.colbert_search import evaluate_colbert

            metrics.update(evaluate_colbert(loaded, prep.eval_data, cfg.eval.batch_size, progress=True))
        elif prep.eval_data is not None:
            metrics.update(evaluate_dense(loaded, prep.eval_data, cfg.eval.batch_size, progress=True,
                                          all_dims=all_dims))
        if cfg.eval.sts and cfg.task in ("dense", "distill"):
            metrics.update(evaluate_sts(loaded, cfg.eval.sts, cfg.eval.batch_size, all_dims, progress=True))
        value = metrics[cfg.eval.metric]
        if meta["best"] is None or value > meta["best"]["value"]:
            meta["best"] = {"step": step, "metric": cfg.eval.metric, "value": value}
        record = {"step": step, **{f"eval/{k}": v for k, v in metrics.items()}, "best_step": meta["best"]["step"]}
        run_log.write(record)
        summary["eval"] = metrics
        summary["eval_history"].append({"step": step, cfg.eval.metric: value})
        print(json.dumps(record), file=sys.stderr)

    if start == 0 and evaluates and cfg.eval_every > 0:
        run_eval(0)
    step = start
    try:
        end = prep.total_steps if stop_at_step is None else min(stop_at_step, prep.total_steps)
        for local in iterate(source, start, end):
            state, metrics = train_step(state, global_batch(local, batch_sh), aux)
            step += 1
            if step % cfg.log_every == 0 or step == prep.total_steps:
                m = {k: float(v) for k, v in jax.device_get(metrics).items()}
                run_log.write({"step": step, **m, "epoch": step / source.steps_per_epoch})
                run_log.progress(step, m["loss"])
                summary["loss"] = m["loss"]
            if cfg.eval_every and step % cfg.eval_every == 0 and step != prep.total_steps:
                run_eval(step)
            checkpoints.save(step, state, meta)
        if step == prep.total_steps:
            run_eval(step)
        checkpoints.save(step, state, meta, force=True)
    finally:
        checkpoints.close()
        run_log.close()
    summary.update(step=step, best=meta["best"])
    return summary
