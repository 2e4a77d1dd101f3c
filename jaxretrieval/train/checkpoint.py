"""Orbax checkpoints holding everything an exact resume needs: parameters, optimizer state, step (which is also
the data position, see data/pipeline.py), the dropout seed, and the resolved config and best-eval record as JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpoints:
    def __init__(self, directory: str | Path, keep: int, save_every: int):
        self.directory = Path(directory).absolute() / "checkpoints"
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, save_interval_steps=1,
                                                 enable_async_checkpointing=True, create=True),
        )
        self.save_every = save_every

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

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


def restore_params(run_dir: str | Path, step: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The parameters of one checkpoint as a flat {"encoder.layers.0.query.kernel": array} dict, plus its meta,
    without knowing the optimizer: everything is restored onto one local device from the saved metadata, so
    this works on a machine with another device count than the one that trained (export, evaluation)."""
    import numpy as np

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
    flat = jax.tree_util.tree_flatten_with_path(out.state["params"])[0]
    names = (".".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path) for path, _ in flat)
    params = {name.removesuffix(".value"): np.asarray(v) for name, (_, v) in zip(names, flat)}
    return params, out.meta
