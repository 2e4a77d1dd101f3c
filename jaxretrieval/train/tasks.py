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

import copy
import dataclasses
from typing import Any, Protocol

import jax

from jaxretrieval.config import TrainConfig
from jaxretrieval.sources import TrainSource, source_config, train_sources
from jaxretrieval.data.dev_split import dev_sources
from jaxretrieval.data.mixture import MixtureSource, batch_rows, source_shares
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


def build_task(cfg: TrainConfig, loaded) -> Task:
    """The config's task over its data.train: one source, or a mixture of sources (data/mixture.py), each built
    by the task from its own single-source config (train_sources: its path, split, negatives, prompt), so every
    format a task reads can be mixed. With mixed batches each source is built at its rows of the batch; sizing
    them by the sources' sizes first builds each at the smallest batch (one row a process) to count its
    examples."""
    kind = TASKS[cfg.task]
    sources = train_sources(cfg)
    if cfg.data.dev_queries and any(is_prepared(s.path) for s in sources):
        raise InputError("data.dev_queries is not supported with prepared shards yet (their records are tokenized "
                         "and cannot be matched to dev queries): train from the jsonl or BEIR directory", "config",
                         field="data.dev_queries")
    if not isinstance(cfg.data.train, list):
        return kind.build(cfg, loaded)
    # each source leaves out the dev queries of every BEIR directory in the mixture, not only its own
    base = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, dev_data=dev_sources(cfg))) \
        if cfg.data.dev_queries else cfg
    d, unit = cfg.data, jax.process_count()
    build = lambda src, batch: kind.build(source_config(base, src, batch), _with_prompts(loaded, src))  # noqa: E731
    one = cfg.one_source_batches
    if one:
        rows = [src.batch_size or cfg.batch_size for src in sources]
        tasks = [build(src, r) for src, r in zip(sources, rows)]
        sizes = [t.source.steps_per_epoch for t in tasks]  # in batches: an epoch passes over each source once
    elif d.sampling in ("size", "size_temperature"):
        sizes = [build(src, unit).source.steps_per_epoch * unit for src in sources]
    else:
        sizes = [0] * len(sources)
    shares = source_shares(d.sampling, sizes, [s.weight for s in sources], d.temperature)
    if not one:
        # split without regard to the process count, so one config makes the same batches on any number of hosts
        rows = batch_rows(shares, cfg.batch_size, 1)
        for i, (src, r) in enumerate(zip(sources, rows)):
            if r == 0 or r % unit:
                why = "no rows" if r == 0 else f"{r} rows, which do not split over {unit} processes,"
                raise InputError(f"source {src.name!r} gets {why} of a batch of {cfg.batch_size} at its share "
                                 f"{shares[i]:.4f}: change its weight or the batch size, or set "
                                 f"data.batch_from_one_source=true", "config", field=f"data.train[{i}]")
        tasks = [build(src, r) for src, r in zip(sources, rows)]
    mixture = MixtureSource([t.source for t in tasks], [s.name for s in sources], shares, rows, cfg.seed, one,
                            d.sampling == "round_robin", _pad_id(loaded.tokenizer))
    return dataclasses.replace(tasks[0], cfg=cfg, source=mixture)


def _with_prompts(loaded, src: TrainSource):
    """The bundle with this source's query / doc prompts in its tokenizer (dense), or as it is."""
    if src.query_prompt is None and src.doc_prompt is None:
        return loaded
    if is_prepared(src.path):
        raise InputError("query_prompt and doc_prompt are applied when the text is tokenized; this source is "
                         "prepared already (its tokens carry the prompts it was prepared with)", src.path,
                         field="query_prompt")
    tok = copy.copy(loaded.tokenizer)
    tok.prompts = {"query": tok.prompts["query"] if src.query_prompt is None else src.query_prompt,
                   "doc": tok.prompts["doc"] if src.doc_prompt is None else src.doc_prompt}
    return dataclasses.replace(loaded, tokenizer=tok)


def _pad_id(tokenizer) -> int:
    """The id that pads token ids: the text tokenizer's (ColBERT wraps one)."""
    return tokenizer.pad_id if hasattr(tokenizer, "pad_id") else tokenizer.text.pad_id


def prepare_data(cfg: TrainConfig, out: str, num_shards: int, overwrite: bool = False) -> dict:
    """`jaxretrieval prepare`: the config's data.train as shards for its task, with the tokenizer and lengths its
    training run will use. The output is checked before the model is loaded."""
    if isinstance(cfg.data.train, list):
        raise InputError("data.train is a list of sources; prepare one at a time (data.train=PATH) and name the "
                         "prepared directories in the mixture", "config", field="data.train")
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
