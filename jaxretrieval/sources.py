"""Training sources and evaluation datasets as the config names them: a mixture's entries (TrainSource), their
resolution against the data.* defaults, the single-source config a task builds each from, and the names datasets
go by in logs and metrics. Below config.py, which holds them in its schema, and every layer that builds or reports
on them."""

from __future__ import annotations

import dataclasses
import posixpath
from typing import Any

from jaxretrieval.errors import InputError


@dataclasses.dataclass
class TrainSource:
    """One dataset of a mixture (data.train as a list). Empty or negative fields take the data.* value."""

    path: str = ""  # as data.train: jsonl, BEIR directory, STS file or prepared shards
    name: str = ""  # in logs, metrics and the model card; default: the file or directory name
    weight: float = 1.0  # share of the batches with data.sampling weights (relative to the other sources')
    prompt: str = ""  # instruction prepended to each query that has no prompt of its own
    query_prompt: str | None = None  # replaces the model's query prompt for this source's queries (dense)
    doc_prompt: str | None = None  # replaces the model's document prompt for this source (dense)
    num_negatives: int = -1
    split: str = ""
    min_score: float | None = None
    # rows of this source's batches (one source per batch), 0: batch_size. A source smaller than a batch (a
    # 10-row sample) can still take part; each batch size is its own compiled shape
    batch_size: int = 0



SAMPLINGS = ("weights", "size", "size_temperature", "round_robin")


def source_name(path: str) -> str:
    """A source's default name: its file or directory name without the data suffix."""
    name = posixpath.basename(str(path).rstrip("/"))
    for suffix in (".jsonl", ".csv", ".tsv"):
        name = name.removesuffix(suffix)
    return name


def dataset_names(paths: list[str]) -> list[str]:
    """Each dataset's name in metrics: its directory or file name, numbered when two would be the same."""
    names = [source_name(p) for p in paths]
    return [f"{n}.{names[:i].count(n) + 1}" if names.count(n) > 1 else n for i, n in enumerate(names)]


def train_sources(cfg: Any) -> list[TrainSource]:
    """A TrainConfig's data.train as resolved sources: one for a path, each entry of a list, every empty field
    from data.*."""
    d = cfg.data
    items = d.train if isinstance(d.train, list) else [TrainSource(path=d.train)]
    return [dataclasses.replace(
        s, name=s.name or source_name(s.path), prompt=s.prompt or d.prompt,
        num_negatives=d.num_negatives if s.num_negatives < 0 else s.num_negatives, split=s.split or d.split,
        min_score=d.min_score if s.min_score is None else s.min_score) for s in items]


def source_config(cfg: Any, src: TrainSource, batch_size: int) -> Any:
    """The single-source TrainConfig a task builds one source of a mixture from (src resolved by train_sources)."""
    data = dataclasses.replace(cfg.data, train=src.path, split=src.split, num_negatives=src.num_negatives,
                               prompt=src.prompt, min_score=src.min_score, sampling="size", temperature=1.0,
                               batch_from_one_source=None)
    return dataclasses.replace(cfg, data=data, batch_size=batch_size)


def validate_sources(cfg: Any, source: str, scored: bool) -> None:
    """A TrainConfig's data.train as one source or a mixture: every setting a source carries is used, or it is an
    error. scored: the task distils teacher scores, so every source needs negatives."""
    d = cfg.data
    mixture = isinstance(d.train, list)
    checks = [
        (d.sampling in SAMPLINGS, "data.sampling", f"must be one of {', '.join(SAMPLINGS)}", d.sampling),
        (d.temperature > 0, "data.temperature", "must be positive", d.temperature),
        (d.temperature == 1 or d.sampling == "size_temperature", "data.temperature",
         "is used only with data.sampling size_temperature", d.temperature),
        (mixture or (d.sampling == "size" and d.batch_from_one_source is None), "data.sampling",
         "and data.batch_from_one_source are for a list of sources in data.train", d.sampling),
        (not mixture or bool(d.train), "data.train", "must name at least one source", d.train),
        (not mixture or cfg.task != "distill", "data.train", "is one text file for task distill (its teacher "
         "vectors are aligned row by row with it); concatenate the texts, or prepare them", "a list"),
    ]
    items = d.train if mixture else []
    for i, src in enumerate(items):
        key = f"data.train[{i}]"
        checks += [
            (bool(src.path), f"{key}.path", "must be set", src.path),
            (src.weight >= 0, f"{key}.weight", "must be >= 0", src.weight),
            (src.weight == 1 or d.sampling == "weights", f"{key}.weight",
             f"is used only with data.sampling weights (data.sampling is {d.sampling})", src.weight),
            (src.num_negatives >= -1, f"{key}.num_negatives", "must be >= 0 (-1: data.num_negatives)",
             src.num_negatives),
            (src.batch_size >= 0, f"{key}.batch_size", "must be >= 0 (0: batch_size)", src.batch_size),
            (not src.batch_size or cfg.one_source_batches, f"{key}.batch_size",
             "is for one source per batch (mixed batches split batch_size by the shares)", src.batch_size),
            ((src.query_prompt is None and src.doc_prompt is None) or cfg.task == "dense", f"{key}.query_prompt",
             "and doc_prompt are for task dense (the other tasks' tokenizers carry no prompts)",
             src.query_prompt),
        ]
    checks.append((not items or d.sampling != "weights" or sum(s.weight for s in items) > 0, "data.train",
                   "needs a positive weight on at least one source", [s.weight for s in items]))
    for ok, key, message, got in checks:
        if not ok:
            raise InputError(f"{key} {message} (got {got!r})", source, field=key)
    resolved = train_sources(cfg)
    names = [s.name for s in resolved]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise InputError(f"data.train[{i}].name {name!r} is also source {names.index(name)}'s; give each "
                             f"source its own name", source, field=f"data.train[{i}].name")
    for i, s in enumerate(resolved):
        where = f"data.train[{i}]." if mixture else "data."
        for key, value in (("prompt", s.prompt), ("min_score", s.min_score)):
            if value not in ("", None) and cfg.task not in ("dense", "colbert"):
                raise InputError(f"{where}{key} is for tasks dense and colbert (got {value!r})", source,
                                 field=where + key)
        if scored and s.num_negatives <= 0:
            raise InputError(f"data.train[{i}].num_negatives must be > 0 to distill teacher scores (the group "
                             f"each query is distilled over)", source, field=f"data.train[{i}].num_negatives")
