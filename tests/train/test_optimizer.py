"""AdamW with warmup then decay, global-norm clipping, and no weight decay on biases and LayerNorm scales."""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from jaxretrieval.config import OptimizerConfig
from jaxretrieval.train.optimizer import Optimizer, learning_rate_schedule, make_optimizer, weight_decay_mask


@pytest.mark.parametrize("schedule, end", [("linear", 0.0), ("cosine", 0.0), ("constant", 1.0)])
def test_schedules_warm_up_then_decay(schedule, end):
    lr = learning_rate_schedule(OptimizerConfig(schedule=schedule, warmup_ratio=0.1), 1.0, 100)
    assert float(lr(0)) == 0.0 and float(lr(5)) == pytest.approx(0.5) and float(lr(10)) == pytest.approx(1.0)
    assert float(lr(100)) == pytest.approx(end, abs=1e-6)
    assert float(learning_rate_schedule(OptimizerConfig(warmup_steps=4), 1.0, 100)(4)) == pytest.approx(1.0)


def test_decay_mask_and_clipping():
    class Block(nnx.Module):
        def __init__(self):
            self.dense = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
            self.norm = nnx.LayerNorm(2, rngs=nnx.Rngs(0))
            self.embed = nnx.Embed(5, 2, rngs=nnx.Rngs(0))

    params = nnx.state(Block(), nnx.Param)
    mask = {k: v for k, v in nnx.to_flat_state(weight_decay_mask(params))}
    flat = {".".join(map(str, k)): (v.get_value() if hasattr(v, "get_value") else v) for k, v in mask.items()}
    assert flat == {"dense.kernel": True, "dense.bias": False, "norm.scale": False, "norm.bias": False,
                    "embed.embedding": True}
    opt = make_optimizer(OptimizerConfig(max_grad_norm=1.0, warmup_steps=0, schedule="constant"), 0.1, 10)
    assert isinstance(opt, Optimizer) and float(opt.schedule(3)) == pytest.approx(0.1)
    big = jax.tree.map(lambda x: jnp.full_like(x, 100.0), params)
    updates, _ = opt.tx.update(big, opt.tx.init(params), params)
    assert all(bool(jnp.isfinite(u).all()) for u in jax.tree.leaves(updates))
