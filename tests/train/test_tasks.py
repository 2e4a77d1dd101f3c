"""The task interface: task_loss runs streams -> representations -> loss in one pass; one stream gets the dropout
key itself, several get one split key each."""

import jax
import jax.numpy as jnp
import pytest

from jaxretrieval.train.tasks import TASKS, task_loss


class Recorder:
    """A task whose encoder records the key each stream was given."""

    teacher_params: dict = {}

    def __init__(self, names):
        self.names, self.keys = names, {}

    def streams(self, batch):
        return {n: {"x": batch["x"]} for n in self.names}

    def encode(self, model, name, inputs, key):
        self.keys[name] = key
        return inputs["x"] * model

    def loss_from_reps(self, reps, batch, teacher_params=None):
        return sum(r.sum() for r in reps.values()), {"streams": len(reps)}


@pytest.mark.parametrize("names", [("text",), ("query", "doc")])
def test_keys_per_stream(names):
    task, key = Recorder(names), jax.random.key(3)
    loss, metrics = task_loss(task, 2.0, {"x": jnp.ones(3)}, {}, key)
    assert float(loss) == 6.0 * len(names) and metrics == {"streams": len(names)}
    if len(names) == 1:
        assert jnp.array_equal(jax.random.key_data(task.keys["text"]), jax.random.key_data(key))
    else:
        split = jax.random.split(key, 2)
        for i, name in enumerate(names):
            assert jnp.array_equal(jax.random.key_data(task.keys[name]), jax.random.key_data(split[i]))
    task_loss(task, 2.0, {"x": jnp.ones(3)}, {}, None)
    assert all(k is None for k in task.keys.values())


def test_every_task_has_the_interface():
    assert sorted(TASKS) == ["colbert", "dense", "distill", "reranker"]
    for cls in TASKS.values():
        for method in ("build", "streams", "encode", "loss_from_reps"):
            assert callable(getattr(cls, method)), (cls, method)
        assert "teacher_params" in cls.__dataclass_fields__
