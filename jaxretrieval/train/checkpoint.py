"""Orbax checkpoints holding everything an exact resume needs: parameters, optimizer state, step (which is also
the data position, see data/pipeline.py), the dropout seed, and the resolved config and best-eval record as JSON.

A checkpoint counts only once Orbax has written its commit marker (the last file of a save), so a save cut off by
a kill is never taken for the newest. One that has its marker but cannot be read (a truncated or deleted file) is
reported in one line, set aside as STEP.damaged, and the run resumes from the previous one.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxretrieval.errors import InputError
from jaxretrieval.files import UPath, absolute, upath
from jaxretrieval.models.params import param_name

log = logging.getLogger(__name__)

COMMIT_MARKER = "commit_success.txt"  # Orbax writes it when every file of a step is in place


class Checkpoints:
    def __init__(self, directory: str | os.PathLike, keep: int, save_every: int):
        self.directory = absolute(directory) / "checkpoints"  # local or gs://: Orbax writes both through epath
        self.manager = ocp.CheckpointManager(
            self.directory,
            # cleanup_tmp_directories: a save a kill cut off leaves a temporary folder; the next start removes it
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, save_interval_steps=1,
                                                 enable_async_checkpointing=True, create=True,
                                                 cleanup_tmp_directories=True),
            item_handlers={"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()},
        )
        self.save_every = save_every

    def save(self, step: int, state: dict[str, Any], meta: dict[str, Any] | Callable[[], dict[str, Any]],
             force: bool = False) -> bool:
        """meta may be a function, called only when this step is saved (what it costs is paid per save)."""
        if not force and (self.save_every <= 0 or step % self.save_every):
            return False
        if step in self.manager.all_steps():
            return False
        meta = meta() if callable(meta) else meta
        return self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                               meta=ocp.args.JsonSave(meta)), force=True)

    def restore(self, step: int, like: dict[str, Any], shardings: dict[str, Any]) -> tuple[dict, dict]:
        """Restore onto the given shardings (so a run can resume on a different mesh)."""
        abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), like, shardings)
        out = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                                 meta=ocp.args.JsonRestore()))
        return out.state, out.meta

    def restore_newest(self, like: dict[str, Any], shardings: dict[str, Any],
                       check_meta: Callable[[int, dict], None]) -> tuple[int, dict, dict] | None:
        """(step, state, meta) of the newest checkpoint that restores, or None when there is none. check_meta(step,
        meta) runs first and may refuse (another run's data or settings): that is an InputError, not damage. A
        checkpoint whose saved shapes differ from `like` belongs to another model: also an InputError."""
        for step in reversed(checkpoint_steps(self.directory.parent)):
            try:
                meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
                saved = _shapes(self.manager.item_metadata(step).state)
                if not saved:
                    raise FileNotFoundError("the state's metadata (_METADATA) is missing or empty")
            except Exception as e:  # noqa: BLE001 -- any unreadable file is damage, reported and set aside
                self._set_aside(step, e)
                continue
            check_meta(step, meta)
            want = _shapes(like)
            if saved != want:
                diff = sorted(set(saved.items()) ^ set(want.items()))[:3]
                raise InputError(f"checkpoint at step {step} holds another model's state (e.g. {diff}); use a new "
                                 f"output_dir", self.directory / str(step))
            try:
                state, meta = self.restore(step, like, shardings)
            except Exception as e:  # noqa: BLE001
                self._set_aside(step, e)
                continue
            return step, state, meta
        return None

    def _set_aside(self, step: int, error: Exception) -> None:
        folder = self.directory / str(step)
        why = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        aside = folder.with_name(f"{step}.damaged")
        if jax.process_index() == 0:
            folder.rename(aside)  # on GCS a copy and a delete: the other hosts wait for it below
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(f"set aside checkpoint {step}")
        print(f"checkpoint at step {step} cannot be read ({type(error).__name__}: {why}); moved to {aside}, trying "
              f"the previous one", flush=True)
        self.manager.reload()

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def checkpoint_steps(run_dir: str | os.PathLike) -> list[int]:
    directory = upath(run_dir) / "checkpoints"
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit() and (p / COMMIT_MARKER).exists())


def _shapes(tree) -> dict[str, tuple[int, ...]]:
    """Dotted name -> shape of every array leaf (arrays, ShapeDtypeStructs or Orbax array metadata alike)."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {param_name(path): tuple(getattr(leaf, "shape", ())) for path, leaf in flat}


def find_checkpoint(path: str | os.PathLike) -> tuple[UPath, int] | None:
    """(run directory, step) for a run directory (its newest checkpoint) or RUN/checkpoints/STEP; None when
    `path` is neither (e.g. a model directory). A run directory without checkpoints is an error."""
    p = upath(path)
    if not p.exists():
        raise InputError("checkpoint path does not exist", p)
    if p.name.isdigit() and p.parent.name == "checkpoints":
        run_dir, step = p.parent.parent, int(p.name)
        if step not in checkpoint_steps(run_dir):
            raise InputError("not a complete checkpoint (Orbax never finished writing it)", p)
        return run_dir, step
    if (p / "config.yaml").exists() or (p / "checkpoints").exists():
        steps = checkpoint_steps(p)
        if not steps:
            raise InputError("run directory has no checkpoint (train first, or point at a model directory)", p)
        return p, steps[-1]
    return None


def restore_params(run_dir: str | os.PathLike, step: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The parameters of one checkpoint as a flat {"encoder.layers.0.query.kernel": array} dict, plus its meta,
    without knowing the optimizer: everything is restored onto one local device from the saved metadata, so
    this works on a machine with another device count than the one that trained (export, evaluation)."""
    manager = ocp.CheckpointManager(absolute(run_dir) / "checkpoints",
                                    item_handlers={"state": ocp.StandardCheckpointHandler(),
                                                   "meta": ocp.JsonCheckpointHandler()})
    try:
        metadata = manager.item_metadata(step)
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), metadata.state)
        out = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                           meta=ocp.args.JsonRestore()))
    except Exception as e:  # noqa: BLE001 -- one line for whatever Orbax found wrong with the files
        why = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        raise InputError(f"checkpoint cannot be read ({type(e).__name__}: {why})",
                         upath(run_dir) / "checkpoints" / str(step)) from None
    finally:
        manager.close()
    # trainable and frozen parameters are stored apart (see train/loop.py); together they are the model
    flat = jax.tree_util.tree_flatten_with_path({"a": out.state["params"], "b": out.state.get("frozen", {})})[0]
    return {param_name(path[1:]): np.asarray(v) for path, v in flat}, out.meta
