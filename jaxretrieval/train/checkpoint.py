"""Orbax checkpoints holding everything an exact resume needs: parameters, optimizer state, step (which is also
the data position, see data/pipeline.py), the dropout seed, and the resolved config and best-eval record as JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxretrieval.errors import InputError
from jaxretrieval.models.params import param_name


class Checkpoints:
    def __init__(self, directory: str | Path, keep: int, save_every: int):
        self.directory = Path(directory).absolute() / "checkpoints"
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, save_interval_steps=1,
                                                 enable_async_checkpointing=True, create=True),
        )
        self.save_every = save_every

    def save(self, step: int, state: dict[str, Any], meta: dict[str, Any], force: bool = False) -> bool:
        if not force and (self.save_every <= 0 or step % self.save_every):
            return False
        if step in self.manager.all_steps():
            return False
        return self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                               meta=ocp.args.JsonSave(meta)), force=True)

    def restore(self, step: int, like: dict[str, Any], shardings: dict[str, Any]) -> tuple[dict, dict]:
        """Restore onto the given shardings (so a run can resume on a different mesh)."""
        abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), like, shardings)
        out = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                                 meta=ocp.args.JsonRestore()))
        return out.state, out.meta

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def checkpoint_steps(run_dir: str | Path) -> list[int]:
    directory = Path(run_dir) / "checkpoints"
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit() and (p / "state").is_dir())


def find_checkpoint(path: str | Path) -> tuple[Path, int] | None:
    """(run directory, step) for a run directory (its newest checkpoint) or RUN/checkpoints/STEP; None when
    `path` is neither (e.g. a model directory). A run directory without checkpoints is an error."""
    p = Path(path)
    if not p.exists():
        raise InputError("checkpoint path does not exist", p)
    if p.name.isdigit() and p.parent.name == "checkpoints":
        run_dir, step = p.parent.parent, int(p.name)
        if step not in checkpoint_steps(run_dir):
            raise InputError("not a complete checkpoint (no saved state)", p)
        return run_dir, step
    if (p / "config.yaml").exists() or (p / "checkpoints").exists():
        steps = checkpoint_steps(p)
        if not steps:
            raise InputError("run directory has no checkpoint (train first, or point at a model directory)", p)
        return p, steps[-1]
    return None


def restore_params(run_dir: str | Path, step: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The parameters of one checkpoint as a flat {"encoder.layers.0.query.kernel": array} dict, plus its meta,
    without knowing the optimizer: everything is restored onto one local device from the saved metadata, so
    this works on a machine with another device count than the one that trained (export, evaluation)."""
    manager = ocp.CheckpointManager(Path(run_dir).absolute() / "checkpoints",
                                    item_handlers={"state": ocp.StandardCheckpointHandler(),
                                                   "meta": ocp.JsonCheckpointHandler()})
    try:
        metadata = manager.item_metadata(step)
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), metadata.state)
        out = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                           meta=ocp.args.JsonRestore()))
    finally:
        manager.close()
    # trainable and frozen parameters are stored apart (see train/loop.py); together they are the model
    flat = jax.tree_util.tree_flatten_with_path({"a": out.state["params"], "b": out.state.get("frozen", {})})[0]
    return {param_name(path[1:]): np.asarray(v) for path, v in flat}, out.meta
