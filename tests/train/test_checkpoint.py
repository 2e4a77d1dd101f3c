"""Orbax checkpoints: save every N steps (keep-N), restore onto given shardings, find a run's newest checkpoint,
and read one checkpoint's parameters by dotted name without knowing the optimizer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxretrieval.errors import InputError
from jaxretrieval.train.checkpoint import Checkpoints, checkpoint_steps, find_checkpoint, restore_params


def _state(scale: float):
    return {"params": {"encoder": {"kernel": jnp.full((2, 3), scale)}}, "frozen": {"head": {"bias": jnp.ones(3)}},
            "step": jnp.asarray(int(scale), jnp.int32)}


def test_save_keep_restore_and_find(tmp_path):
    run = tmp_path / "run"
    ckpt = Checkpoints(run, keep=2, save_every=2)
    for step in range(1, 6):
        ckpt.save(step, _state(float(step)), {"best": None, "step": step})
    ckpt.save(5, _state(5.0), {"best": None}, force=True)
    ckpt.wait()
    assert checkpoint_steps(run) == [4, 5]
    like = _state(0.0)
    shardings = jax.tree.map(lambda x: jax.sharding.SingleDeviceSharding(jax.devices()[0]), like)
    state, meta = ckpt.restore(4, like, shardings)
    ckpt.close()
    assert float(state["params"]["encoder"]["kernel"][0, 0]) == 4.0 and meta["step"] == 4
    assert find_checkpoint(run) == (run, 5)
    assert find_checkpoint(run / "checkpoints" / "4") == (run, 4)
    params, _ = restore_params(run, 5)
    assert sorted(params) == ["encoder.kernel", "head.bias"]  # trained and frozen together
    np.testing.assert_array_equal(params["encoder.kernel"], np.full((2, 3), 5.0))


def test_paths_that_are_not_checkpoints(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    assert find_checkpoint(model) is None  # a model directory: not a run
    (tmp_path / "empty_run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(InputError, match="no checkpoint"):
        find_checkpoint(tmp_path / "empty_run")
    (tmp_path / "empty_run" / "checkpoints" / "7").mkdir()
    with pytest.raises(InputError, match="not a complete checkpoint"):
        find_checkpoint(tmp_path / "empty_run" / "checkpoints" / "7")
    with pytest.raises(InputError, match="does not exist"):
        find_checkpoint(tmp_path / "none")
