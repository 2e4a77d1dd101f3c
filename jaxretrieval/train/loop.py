"""The train loop: one jit-compiled, sharded step over a device mesh, fed by the tf.data pipeline, with Orbax
checkpoints (exact resume) and logs. Everything that can be wrong with the input is checked before the first step.

The loop is handed its side jobs instead of knowing them: evaluation arrives as an `Evaluator` (eval/evaluate.py
builds the config's; training.py hands it over), so train/ depends on neither eval/ nor the CLI.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax
import yaml
from flax import nnx

from jaxretrieval.bundles import Bundle
from jaxretrieval.config import TrainConfig, changed_settings, config_paths, config_to_dict
from jaxretrieval.data.pipeline import iterate
from jaxretrieval.errors import InputError, TrainingDiverged
from jaxretrieval.files import UPath, atomic_file, check_storage, is_remote, upath
from jaxretrieval.models.params import param_name, select_params
from jaxretrieval.sources import train_sources
from jaxretrieval.train.checkpoint import Checkpoints, checkpoint_steps
from jaxretrieval.train.grad_cache import grad_cache_value_and_grad
from jaxretrieval.train.mesh import batch_sharding, data_parallel_size, make_mesh, replicated, tree_shardings
from jaxretrieval.train.model_setup import build_model
from jaxretrieval.train.optimizer import Optimizer, make_optimizer
from jaxretrieval.train.run_control import RunLock, StopSignals, agree, write_status
from jaxretrieval.train.run_log import RunLog
from jaxretrieval.train.tasks import Task, build_task, task_loss


class Evaluator(Protocol):
    """Evaluation handed to the loop. `check` runs before the first step (bad eval input fails before any work);
    calling it evaluates a bundle of the model being trained, on the side the best step is chosen on, logged as
    `prefix`/METRIC (dev, or eval when there is no dev split). `metric` names the metric that picks the best step.
    With `has_test`, `test` evaluates the test side: once, at the end of the run, never to choose anything."""

    metric: str
    prefix: str
    has_test: bool

    def check(self, bundle: Bundle) -> None: ...

    def __call__(self, bundle: Bundle) -> dict[str, Any]: ...

    def test(self, bundle: Bundle) -> dict[str, Any]: ...


@dataclasses.dataclass
class TrainSetup:
    """Everything built and validated before the first step."""

    cfg: TrainConfig
    loaded: Bundle
    task: Task
    total_steps: int
    mesh: jax.sharding.Mesh

    @property
    def source(self):
        return self.task.source


class TrainState(NamedTuple):
    """The trained state placed on the mesh, with what the step needs to keep it there."""

    graphdef: Any  # the model's structure (nnx.GraphDef); state holds its values
    state: dict[str, Any]  # params (trained), frozen, opt_state, step
    state_shardings: dict[str, Any]
    batch_shardings: dict[str, Any]
    optimizer: Optimizer


def setup(cfg: TrainConfig, resuming: bool = False, evaluator: Evaluator | None = None) -> TrainSetup:
    """Everything a run needs before its first step. resuming: a checkpoint will replace every parameter, so
    init_from and data-dependent head initialization (a forward pass over training texts) are skipped."""
    mesh = make_mesh(cfg.mesh)
    dp = data_parallel_size(mesh)
    for key, size in [("batch_size", cfg.batch_size)] + [(f"data.train[{i}].batch_size", s.batch_size)
                                                         for i, s in enumerate(train_sources(cfg)) if s.batch_size]:
        if size % dp:
            raise InputError(f"{key} {size} is not divisible by the data-parallel size {dp} "
                             f"(mesh data={mesh.shape['data']} x fsdp={mesh.shape['fsdp']})", "config", field=key)
    loaded = build_model(cfg, initialize=not resuming)
    if evaluator is not None:
        evaluator.check(loaded)
    task = build_task(cfg, loaded)
    total = cfg.steps or int(cfg.epochs * task.source.steps_per_epoch)
    if total <= 0:
        raise InputError("no steps to run (set steps or epochs)", "config", field="steps")
    return TrainSetup(cfg, loaded, task, total, mesh)


def make_train_step(graphdef, optimizer: Optimizer, cfg: TrainConfig, task: Task, state_shardings,
                    batch_shardings, teacher_shardings, mesh):
    base_key = jax.random.key(cfg.seed)
    tx, schedule = optimizer

    def step_fn(state, batch, teacher_params):
        step = state["step"]
        key = jax.random.fold_in(base_key, step) if cfg.model.dropout else None
        model_of = lambda p: nnx.merge(graphdef, p, state["frozen"])  # noqa: E731
        if cfg.grad_cache_chunk:
            encode = lambda p, name, inputs, k: task.encode(model_of(p), name, inputs, k)  # noqa: E731
            (loss, task_metrics), grads = grad_cache_value_and_grad(
                encode, lambda reps: task.loss_from_reps(reps, batch, teacher_params), state["params"],
                task.streams(batch), cfg.grad_cache_chunk, key)
        else:
            (loss, task_metrics), grads = jax.value_and_grad(
                lambda p: task_loss(task, model_of(p), batch, teacher_params, key), has_aux=True)(state["params"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        grad_norm = optax.tree.norm(grads)
        # the non-finite guard: a step whose loss, gradient or new parameters are not finite leaves the state as
        # it was (the data position still moves on), so no checkpoint ever holds a NaN
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(optax.tree.norm(params))
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)  # noqa: E731
        bad_in_a_row = jnp.where(finite, 0, state["bad_in_a_row"] + 1)
        skipped = state["skipped_steps"] + jnp.where(finite, 0, 1)
        metrics = {"loss": loss, "grad_norm": grad_norm, "learning_rate": schedule(step), "skipped_steps": skipped,
                   "bad_in_a_row": bad_in_a_row, **task_metrics}
        return {**state, "params": keep(params, state["params"]), "opt_state": keep(opt_state, state["opt_state"]),
                "step": step + 1, "bad_in_a_row": bad_in_a_row, "skipped_steps": skipped}, metrics

    return jax.jit(step_fn, in_shardings=(state_shardings, batch_shardings, teacher_shardings),
                   out_shardings=(state_shardings, replicated(mesh)), donate_argnums=0)


def global_batch(local: dict[str, np.ndarray], shardings: dict[str, Any]) -> dict[str, jax.Array]:
    return {k: jax.make_array_from_process_local_data(shardings[k], v) for k, v in local.items()}


def split_trainable(model, cfg: TrainConfig):
    """(graphdef, trainable params, frozen params) by optimizer.trainable; frozen ones get no gradient, no
    update and no optimizer state."""
    chosen = select_params(model, cfg.optimizer.trainable)
    is_trainable = lambda path, _: param_name(path) in chosen  # noqa: E731
    return nnx.split(model, is_trainable, ...)


def init_train_state(run: TrainSetup) -> TrainState:
    """Parameters and optimizer state placed on the mesh, with their shardings and the batch shardings."""
    cfg, mesh, source = run.cfg, run.mesh, run.source
    graphdef, params, frozen = split_trainable(run.loaded.model, cfg)
    optimizer = make_optimizer(cfg.optimizer, cfg.learning_rate, run.total_steps)
    param_sh, frozen_sh = tree_shardings(params, mesh), tree_shardings(frozen, mesh)
    params, frozen = jax.device_put(params, param_sh), jax.device_put(frozen, frozen_sh)
    opt_state = jax.jit(optimizer.tx.init)(params)
    opt_sh = tree_shardings(opt_state, mesh)
    # Every leaf is placed with its final sharding up front: an unplaced leaf would make the second call of the
    # train step miss the jit cache and compile again.
    counters = ("step", "bad_in_a_row", "skipped_steps")  # bad_in_a_row / skipped_steps: the non-finite guard's
    state = {"params": params, "frozen": frozen, "opt_state": jax.device_put(opt_state, opt_sh),
             **{c: jax.device_put(jnp.zeros((), jnp.int32), replicated(mesh)) for c in counters}}
    state_sh = {"params": param_sh, "frozen": frozen_sh, "opt_state": opt_sh, **{c: replicated(mesh) for c in counters}}
    batch_sh = {k: batch_sharding(mesh, v.ndim) for k, v in source.batch(0).items()}
    return TrainState(graphdef, state, state_sh, batch_sh, optimizer)


def train_step_for(run: TrainSetup, ts: TrainState):
    """The jitted step of this task, and the task's teacher_params (online teachers) placed on the mesh.
    Returns (step(state, batch, teacher_params) -> (state, metrics), teacher_params)."""
    teacher_sh = tree_shardings(run.task.teacher_params, run.mesh)
    teacher_params = jax.device_put(run.task.teacher_params, teacher_sh)
    step = make_train_step(ts.graphdef, ts.optimizer, run.cfg, run.task, ts.state_shardings, ts.batch_shardings,
                           teacher_sh, run.mesh)
    return step, teacher_params


def train(cfg: TrainConfig, stop_at_step: int | None = None, evaluator: Evaluator | None = None) -> dict[str, Any]:
    """Run (or resume) training. Returns a summary: final step, last loss, last and best eval metrics, skipped
    steps, and `interrupted` (the signal that stopped the run, or None).

    stop_at_step ends the run early as a preemption would (a checkpoint is written there), while the schedule
    still follows the configured total: the resumed run must continue exactly as if never stopped. With an
    evaluator, the model is evaluated at step 0 (when eval_every > 0), every eval_every steps and at the end.
    SIGTERM / SIGINT stop the run after the current step with a checkpoint of it (train/run_control.py)."""
    check_output_dir(cfg)
    out = upath(cfg.output_dir)
    resuming = bool(checkpoint_steps(out))  # read without writing: bad input must fail below with nothing created
    run = setup(cfg, resuming=resuming, evaluator=evaluator)
    lock = RunLock(out)
    lock.acquire()
    try:
        return _run(run, out, resuming, stop_at_step, evaluator)
    finally:
        lock.release()


def check_output_dir(cfg: TrainConfig) -> None:
    """Before anything is built: every gs:// bucket the config names can be reached, and a run of several processes
    writes where all of them see the same files (their checkpoints are one checkpoint, written together)."""
    buckets = {}
    for key, path in config_paths(cfg):  # one check per bucket, naming the first key that uses it
        buckets.setdefault(path.split("/")[2] if is_remote(path) else "", (key, path))
    for key, path in buckets.values():
        check_storage(path, field=key)
    if jax.process_count() > 1 and not is_remote(cfg.output_dir) and not cfg.shared_filesystem:
        raise InputError(f"{jax.process_count()} processes cannot share a local output_dir: each host would save "
                         f"its own partial checkpoint. Use gs://BUCKET/RUN, or set shared_filesystem=true if this path "
                         f"is one filesystem for every host (NFS, or all processes on one machine)", cfg.output_dir,
                         field="output_dir")


def _restore(checkpoints: Checkpoints, ts: TrainState, meta: dict[str, Any], cfg: TrainConfig):
    """(state, saved meta) of the newest readable checkpoint, refusing another run's data or changed settings."""
    def check_meta(step: int, saved: dict) -> None:
        if saved.get("data") != meta["data"]:
            raise InputError(f"checkpoint at step {step} was trained on different data {saved.get('data')}; "
                             f"use a new output_dir", checkpoints.directory)
        changes = changed_settings(saved.get("config", {}), meta["config"])
        listed = ", ".join(f"{k} {a!r} -> {b!r}" for k, a, b in changes)
        if changes and not cfg.resume_with_changes:
            raise InputError(f"resuming step {step} with changed settings ({listed}); set resume_with_changes=true "
                             f"if that is meant, or use a new output_dir", "config", field=changes[0][0])
        if changes:
            print(f"resuming with changed settings: {listed}", file=sys.stderr)

    def check_position(step: int, saved: dict) -> None:
        check_meta(step, saved)
        here = meta["position_at"](step)
        if saved.get("position") is not None and saved["position"] != here:
            raise InputError(f"checkpoint at step {step} stands at data position {saved['position']}, but this "
                             f"config's mixture puts step {step} at {here}; use a new output_dir",
                             checkpoints.directory, field="data.train")

    found = checkpoints.restore_newest(ts.state, ts.state_shardings, check_position)
    if found is None:
        raise InputError("no checkpoint of this run can be read (each was set aside as STEP.damaged); move them "
                         "away to start over", checkpoints.directory)
    return found[1], found[2]


def _run(run: TrainSetup, out: UPath, resuming: bool, stop_at_step: int | None, evaluator: Evaluator | None):
    cfg, source = run.cfg, run.source
    ts = init_train_state(run)
    state = ts.state
    checkpoints = Checkpoints(out, cfg.keep_checkpoints, cfg.save_every)
    meta: dict[str, Any] = {"config": config_to_dict(cfg), "data": source.fingerprint(), "best": None}
    position_at = getattr(source, "data_position", lambda step: None)  # a mixture: each source's own steps
    start = 0
    if resuming:
        state, saved_meta = _restore(checkpoints, ts, {**meta, "position_at": position_at}, cfg)
        meta["best"] = saved_meta.get("best")
        start = int(state["step"])
        print(f"resuming from step {start} ({checkpoints.directory})", file=sys.stderr)
    if jax.process_index() == 0:
        with atomic_file(out / "config.yaml", "w") as f:
            f.write(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    write_status(out, "running", start)

    train_step, teacher_params = train_step_for(run, ts)
    run_log = RunLog(out, start, run.total_steps)
    summary: dict[str, Any] = {"step": start, "loss": None, "eval": None, "eval_history": [], "interrupted": None,
                               "eval_side": None if evaluator is None else evaluator.prefix}

    best = BestKeeper(out, cfg) if cfg.keep_best and evaluator is not None else None
    bundle_of = lambda params: dataclasses.replace(  # noqa: E731
        run.loaded, model=nnx.merge(ts.graphdef, params["params"], params["frozen"]))

    def run_eval(step: int) -> None:
        if evaluator is None:
            return
        metrics = evaluator(bundle_of(state))
        value = metrics[evaluator.metric]
        if meta["best"] is None or value > meta["best"]["value"]:
            meta["best"] = {"step": step, "metric": evaluator.metric, "value": value, "side": evaluator.prefix}
            if best is not None:
                best.save(step, state, meta)
        record = {"step": step, **{f"{evaluator.prefix}/{k}": v for k, v in metrics.items()},
                  "best_step": meta["best"]["step"]}
        run_log.write(record)
        summary["eval"] = metrics
        summary["eval_history"].append({"step": step, evaluator.metric: value})
        print(json.dumps(record), file=sys.stderr)

    if start == 0 and cfg.eval_every > 0:
        run_eval(0)
    step, last_save = start, time.monotonic()
    source_fields = getattr(source, "log_fields", None)  # a mixture's per-source examples, epochs and losses
    step_losses, logged = [], start  # device scalars since the last log: fetched together, no sync per step
    try:
        with StopSignals() as signals:
            end = run.total_steps if stop_at_step is None else min(stop_at_step, run.total_steps)
            for local in iterate(source, start, end):
                state, metrics = train_step(state, global_batch(local, ts.batch_shardings), teacher_params)
                step += 1
                if source_fields is not None:
                    step_losses.append(metrics["loss"])
                if step % cfg.log_every == 0 or step == run.total_steps:
                    m = {k: float(v) for k, v in jax.device_get(metrics).items()}
                    extra = {}
                    if source_fields is not None:
                        extra = source_fields(logged, step, np.asarray(jax.device_get(step_losses), np.float64))
                        step_losses, logged = [], step
                    run_log.write({"step": step, **m, "epoch": step / source.steps_per_epoch, **extra})
                    run_log.progress(step, m["loss"])
                    summary.update(loss=m["loss"], skipped_steps=int(m["skipped_steps"]))
                    if m["bad_in_a_row"] >= cfg.max_bad_steps:
                        write_status(out, "diverged", step)
                        kept = checkpoint_steps(out)
                        raise TrainingDiverged(
                            f"the last {int(m['bad_in_a_row'])} steps (to step {step}) had a non-finite loss, "
                            f"gradient or update (max_bad_steps {cfg.max_bad_steps}); every checkpoint is finite, "
                            f"the newest is {f'step {kept[-1]}' if kept else 'none'} in {checkpoints.directory}: "
                            f"lower the learning rate, or check the data, before resuming")
                if cfg.eval_every and step % cfg.eval_every == 0 and step != run.total_steps:
                    run_eval(step)
                due = bool(cfg.save_every_minutes) and time.monotonic() - last_save >= 60 * cfg.save_every_minutes
                stop, due = agree(signals.requested is not None, due)
                if checkpoints.save(step, state, lambda: {**meta, "position": position_at(step)}, force=due):
                    last_save = time.monotonic()
                    run_log.sync()  # a gs:// run's logs reach storage with each checkpoint, so a kill loses none
                if stop:
                    summary["interrupted"] = signals.requested or "another process's signal"
                    break
            if step == run.total_steps and not summary["interrupted"]:
                run_eval(step)
            checkpoints.save(step, state, {**meta, "position": position_at(step)}, force=True)
        finished = step == run.total_steps and not summary["interrupted"]
        if finished and evaluator is not None and evaluator.has_test:
            summary.update(final_test(evaluator, bundle_of, state, best, meta["best"], step, run_log))
    finally:
        checkpoints.close()
        run_log.close()
        if best is not None:
            best.close()
    write_status(out, "finished" if finished else "interrupted", step, reason=summary["interrupted"])
    if summary["interrupted"]:
        print(f"stopped by {summary['interrupted']} after step {step}; its checkpoint is in {checkpoints.directory}: "
              f"run the same command to resume", file=sys.stderr)
    summary.update(step=step, best=meta["best"])
    if finished and jax.process_index() == 0:
        with atomic_file(out / "summary.json", "w") as f:
            json.dump(summary, f, indent=1)
    return summary


def final_test(evaluator: Evaluator, bundle_of, state: dict[str, Any], best: BestKeeper | None,
               best_record: dict | None, step: int, run_log: RunLog) -> dict[str, Any]:
    """The test side, evaluated once at the end: on the final model ("test"), and with keep_best also on the
    best-on-dev step's parameters ("test_at_best"); logged as test/... and test_at_best/.... Nothing here feeds a
    choice: the run already chose on dev."""
    out = {"test": evaluator.test(bundle_of(state))}
    record = {"step": step, **{f"test/{k}": v for k, v in out["test"].items()}}
    if best is not None and best_record is not None:
        at = best_record["step"]
        out["test_at_best"] = out["test"] if at == step else evaluator.test(bundle_of(best.restore(at, state)))
        record.update({f"test_at_best/{k}": v for k, v in out["test_at_best"].items()}, best_step=at)
    run_log.write(record)
    print(json.dumps(record), file=sys.stderr)
    return out


class BestKeeper:
    """keep_best: the best step's parameters in OUTPUT_DIR/best, a run directory of its own (its config.yaml and
    one checkpoint of params and frozen parameters, no optimizer state), so export, eval and init_from open it
    like any run."""

    def __init__(self, out: UPath, cfg: TrainConfig):
        self.directory = out / "best"
        self.cfg = cfg
        self.checkpoints = Checkpoints(self.directory, keep=1, save_every=0)

    def save(self, step: int, state: dict[str, Any], meta: dict[str, Any]) -> None:
        if jax.process_index() == 0:
            with atomic_file(self.directory / "config.yaml", "w") as f:
                f.write(yaml.safe_dump(config_to_dict(self.cfg), sort_keys=False))
        params = {"params": state["params"], "frozen": state["frozen"]}
        self.checkpoints.save(step, params, {"config": meta["config"], "best": meta["best"]}, force=True)

    def restore(self, step: int, like: dict[str, Any]) -> dict[str, Any]:
        """The saved parameters of `step`, placed as `like`'s are."""
        self.checkpoints.wait()
        part = {"params": like["params"], "frozen": like["frozen"]}
        shardings = jax.tree.map(lambda x: x.sharding, part)
        return self.checkpoints.restore(step, part, shardings)[0]

    def close(self) -> None:
        self.checkpoints.close()
