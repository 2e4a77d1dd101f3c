"""What a training task is to the train loop, and the registry of tasks by config name.

A task gives the loop four things, and the loop knows nothing else about it:

- `source`: the batch source (`batch(step)`, `steps_per_epoch`, `fingerprint()`), from data/;
- `teacher_params`: arrays every step needs besides the trained state (online teachers' parameters; often empty),
  passed to each step, never trained, never checkpointed;
- `streams(batch)`: the batch's model inputs, {stream name: {input name: array [rows, ...]}};
- `encode(model, name, inputs, key)`: one stream's representations; `loss_from_reps(reps, batch,
  teacher_params)`: (loss, metrics) from every stream's representations.

and `prepare(cfg, loaded, out, num_shards, overwrite)` writes the config's training data as prepared shards
(data/shard_writer.py), tokenized as the task's `build` will read them when data.train names that directory.

The loss is always streams -> representations -> loss. The plain step runs it as one function; GradCache
(train/grad_cache.py) runs the same three parts chunk by chunk, so every task supports both.
"""

from __future__ import annotations

from typing import Any, Protocol

import jax

from jaxretrieval.config import TrainConfig
from jaxretrieval.data.shard_format import is_prepared
from jaxretrieval.errors import InputError
from jaxretrieval.files import require_free_output
from jaxretrieval.train.colbert_task import ColBERTTask
from jaxretrieval.train.dense_task import DenseTask
from jaxretrieval.train.distill_task import DistillTask
from jaxretrieval.train.model_setup import build_model
from jaxretrieval.train.reranker_task import RerankerTask


class Task(Protocol):
    source: Any
    teacher_params: dict[str, Any]

    def streams(self, batch) -> dict[str, dict[str, jax.Array]]: ...

    def encode(self, model, name: str, inputs: dict[str, jax.Array], key: jax.Array | None) -> Any: ...

    def loss_from_reps(self, reps: dict[str, Any], batch, teacher_params=None
                       ) -> tuple[jax.Array, dict[str, jax.Array]]: ...

    @staticmethod
    def prepare(cfg: TrainConfig, loaded, out: str, num_shards: int, overwrite: bool) -> dict: ...


TASKS: dict[str, type] = {"dense": DenseTask, "distill": DistillTask, "colbert": ColBERTTask,
                          "reranker": RerankerTask}


def prepare_data(cfg: TrainConfig, out: str, num_shards: int, overwrite: bool = False) -> dict:
    """`jaxretrieval prepare`: the config's data.train as shards for its task, with the tokenizer and lengths its
    training run will use. The output is checked before the model is loaded."""
    if is_prepared(cfg.data.train):
        raise InputError("data.train is prepared already; name the source data (jsonl, BEIR directory, texts)",
                         cfg.data.train, field="data.train")
    require_free_output(out, overwrite)
    loaded = build_model(cfg, initialize=False)
    return TASKS[cfg.task].prepare(cfg, loaded, out, num_shards, overwrite)


def task_loss(task: Task, model, batch, teacher_params, dropout_key: jax.Array | None
              ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The task's loss on one batch in one pass. A single stream gets the dropout key itself, several get one split
    key each."""
    streams = task.streams(batch)
    if dropout_key is None:
        keys = [None] * len(streams)
    elif len(streams) == 1:
        keys = [dropout_key]
    else:
        keys = list(jax.random.split(dropout_key, len(streams)))
    reps = {name: task.encode(model, name, inputs, key) for (name, inputs), key in zip(streams.items(), keys)}
    return task.loss_from_reps(reps, batch, teacher_params)
