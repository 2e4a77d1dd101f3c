"""The one evaluation dispatch: which evaluation a bundle gets, for `jaxretrieval eval` and for evaluation during
training alike, so both report the same numbers under the same names.

    embedder   retrieval on a BEIR split (and every Matryoshka dim with all_dims) and/or STS Spearman
    colbert    exact MaxSim retrieval on a BEIR split
    reranker   a first stage's top-k on a BEIR split, reranked (metrics before and after)

Several datasets (BEIR directories, STS files) are evaluated one by one: each dataset's metrics are named
DATASET/METRIC and METRIC is their mean, so a best step can be picked on the mix as on one dataset.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

from jaxretrieval.bundles import COLBERT, EMBEDDER, RERANKER, Bundle
from jaxretrieval.config import TrainConfig
from jaxretrieval.data.beir import BeirSplit, load_beir
from jaxretrieval.data.dev_split import dev_sources, load_dev
from jaxretrieval.errors import InputError
from jaxretrieval.eval.colbert_search import evaluate_colbert
from jaxretrieval.eval.metrics import METRICS
from jaxretrieval.eval.rerank import dense_first_stage, evaluate_reranker
from jaxretrieval.eval.retrieval import evaluate_dense
from jaxretrieval.eval.sts import evaluate_sts
from jaxretrieval.sources import dataset_names

Run = dict[str, list[str]]  # query id -> document ids, best first


def evaluate(bundle: Bundle, data: BeirSplit | None = None, sts: str | None = None, *, batch_size: int = 64,
             all_dims: bool = False, first_stage: Callable[[], Run] | None = None, rerank_top: int = 100,
             progress: bool = True) -> dict:
    """Metrics of `bundle` on a BEIR split and/or an STS file. A reranker needs `first_stage`, which returns the
    run it reranks (called only when needed). An evaluation the bundle cannot have is an InputError."""
    check_evaluable(bundle.kind, data is not None, bool(sts), first_stage is not None)
    if bundle.kind == RERANKER:
        return evaluate_reranker(bundle, data, first_stage(), rerank_top, batch_size)
    if bundle.kind == COLBERT:
        return evaluate_colbert(bundle, data, batch_size, progress=progress)
    all_dims = all_dims and len(bundle.model.dims) > 1
    metrics = {}
    if data is not None:
        metrics.update(evaluate_dense(bundle, data, batch_size, progress=progress, all_dims=all_dims))
    if sts:
        metrics.update(evaluate_sts(bundle, sts, batch_size, all_dims, progress=progress))
    return metrics


def evaluate_datasets(bundle: Bundle, data: list[tuple[str, BeirSplit]], sts: list[tuple[str, str]], *,
                      batch_size: int = 64, all_dims: bool = False,
                      first_stage: Callable[[str, BeirSplit], Run] | None = None, rerank_top: int = 100,
                      progress: bool = True) -> dict[str, dict]:
    """{dataset name: its metrics} for every (name, BEIR split) and (name, STS file); a reranker's first_stage
    is called with the dataset's name and split."""
    check_evaluable(bundle.kind, bool(data), bool(sts), first_stage is not None)
    out: dict[str, dict] = {}
    for name, split in data:
        stage = None if first_stage is None else functools.partial(first_stage, name, split)
        out.setdefault(name, {}).update(evaluate(bundle, split, None, batch_size=batch_size, all_dims=all_dims,
                                                 first_stage=stage, rerank_top=rerank_top, progress=progress))
    for name, path in sts:
        out.setdefault(name, {}).update(evaluate(bundle, None, path, batch_size=batch_size, all_dims=all_dims,
                                                 progress=progress))
    return out


@dataclasses.dataclass
class EvalDatasets:
    """BEIR splits and STS files, each with the name its metrics go by."""

    beir: list[tuple[str, BeirSplit]]
    sts: list[tuple[str, str]]

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.beir] + [n for n, _ in self.sts]

    @property
    def several(self) -> bool:
        """More than one of a kind: metrics are then named per dataset, with their means."""
        return len(self.beir) > 1 or len(self.sts) > 1


def load_datasets(beir_paths: list[str], sts_paths: list[str], split: str) -> EvalDatasets:
    names = dataset_names([*beir_paths, *sts_paths])
    return EvalDatasets([(n, load_beir(p, split)) for n, p in zip(names, beir_paths)],
                        list(zip(names[len(beir_paths):], sts_paths)))


def dataset_means(per_dataset: dict[str, dict]) -> dict:
    """Each metric's mean over the datasets that report it."""
    keys = dict.fromkeys(k for metrics in per_dataset.values() for k in metrics)
    return {k: float(sum(m[k] for m in per_dataset.values() if k in m) / sum(k in m for m in per_dataset.values()))
            for k in keys}


def combined(per_dataset: dict[str, dict], several: bool) -> dict:
    """One flat dict: a single dataset (of each kind) as its own metrics; several as DATASET/METRIC each plus
    METRIC, their mean."""
    if not several:
        return {k: v for metrics in per_dataset.values() for k, v in metrics.items()}
    return {**{f"{name}/{k}": v for name, metrics in per_dataset.items() for k, v in metrics.items()},
            **dataset_means(per_dataset)}


def check_evaluable(kind: str, has_data: bool, has_sts: bool, has_first_stage: bool, where: str = "command line"
                    ) -> None:
    if not has_data and not has_sts:
        raise InputError("give a BEIR directory (--data, eval.data) and/or an STS-B file (--sts, eval.sts)", where)
    if kind == RERANKER and (not has_data or not has_first_stage or has_sts):
        raise InputError("a reranker is evaluated on a BEIR directory with a first stage to rerank (--data and "
                         "--first-stage; in a config eval.data and reranker.first_stage), not on STS", where,
                         field="reranker.first_stage")
    if kind == COLBERT and (has_sts or not has_data):
        raise InputError("a ColBERT model is evaluated on a BEIR directory (--data, eval.data), not on STS", where,
                         field="eval.sts")


def metric_names(kind: str, has_data: bool, has_sts: bool, dims: tuple[int, ...] = (),
                 datasets: tuple[str, ...] = ()) -> list[str]:
    """The metrics `evaluate` reports that can pick a best step (with several datasets: their means, and each
    dataset's own as DATASET/METRIC)."""
    names = (list(METRICS) if has_data else []) + (["sts_spearman"] if has_sts and kind == EMBEDDER
                                                              else [])
    names += [f"dim{d}/{n}" for d in dims[1:] for n in names]
    return names + [f"{ds}/{n}" for ds in datasets for n in names]


def load_dev_datasets(cfg: TrainConfig) -> EvalDatasets:
    """The dev side of a run (data/dev_split.py): each dev BEIR directory's dev queries (data.dev_queries of its
    eval.dev_split, or all of them when that is 0) over its whole corpus, and eval.dev_sts's files."""
    size, e = cfg.data.dev_queries, cfg.eval
    roots = [str(r) for r in (dev_sources(cfg) if size else e.dev_data)]
    names = dataset_names([*roots, *e.dev_sts])
    beir = [(n, load_dev(r, e.dev_split, size) if size else load_beir(r, e.dev_split)) for n, r in zip(names, roots)]
    return EvalDatasets(beir, list(zip(names[len(roots):], e.dev_sts)))


@dataclasses.dataclass
class RunEvaluator:
    """The evaluation a training run is handed (train.loop.Evaluator): the config's eval, on the model being
    trained. With a dev split, calling it evaluates dev (what the best step is chosen on) and `test` evaluates
    eval.data / eval.sts, which the loop does once, at the end; without one, calling it evaluates eval.data /
    eval.sts as before and there is no separate test. Data are read, and impossible requests refused, before the
    first step (`check`); a reranker's first stage is opened and searched once per dataset and run."""

    cfg: TrainConfig
    open_first_stage: Callable[[str], Bundle] | None = None  # the door that opens reranker.first_stage

    @property
    def metric(self) -> str:
        return self.cfg.eval.metric

    @property
    def prefix(self) -> str:
        """What the metrics of a call are logged as: dev/... when the run chooses on dev, else eval/...."""
        return "dev" if self.cfg.selects_on_dev else "eval"

    @functools.cached_property
    def datasets(self) -> EvalDatasets:
        """The side every call evaluates and the best step is chosen on."""
        return load_dev_datasets(self.cfg) if self.cfg.selects_on_dev else self._test_datasets

    @functools.cached_property
    def _test_datasets(self) -> EvalDatasets:
        e = self.cfg.eval
        return load_datasets(e.data, e.sts, e.split)

    @property
    def has_test(self) -> bool:
        """Whether a test side waits for the end (a dev split chooses, and eval.data or eval.sts is set)."""
        return self.cfg.selects_on_dev and bool(self.cfg.eval.data or self.cfg.eval.sts)

    @property
    def names(self) -> list[str]:
        """Names of the chosen side's BEIR directories, then its STS files."""
        return self.datasets.names

    def check(self, bundle: Bundle) -> None:
        d, where = self.datasets, "config"
        has_first_stage = bool(self.cfg.reranker.first_stage)
        check_evaluable(bundle.kind, bool(d.beir), bool(d.sts), has_first_stage, where)
        if self.has_test:
            t = self._test_datasets  # read now: a bad eval directory fails before any training
            check_evaluable(bundle.kind, bool(t.beir), bool(t.sts), has_first_stage, where)
        names = metric_names(bundle.kind, bool(d.beir), bool(d.sts), tuple(getattr(bundle.model, "dims", ())),
                             tuple(self.names) if d.several else ())
        if self.metric not in names:
            raise InputError(f"eval.metric {self.metric!r} is not computed by this run's {self.prefix} evaluation; "
                             f"choose from {names}", where, field="eval.metric")

    _first_stage_runs: dict[tuple[str, int], Run] = dataclasses.field(default_factory=dict, init=False, repr=False)

    def _first_stage_run(self, name: str, split: BeirSplit) -> Run:
        """The first stage's run on one dataset (dev and test sides apart), searched once per training run."""
        key = (name, id(split))  # the splits live as long as this evaluator, so their ids stay theirs
        if key not in self._first_stage_runs:
            r = self.cfg.reranker
            self._first_stage_runs[key] = dense_first_stage(self._first_stage_model, split, r.rerank_top)
        return self._first_stage_runs[key]

    @functools.cached_property
    def _first_stage_model(self) -> Bundle:
        return self.open_first_stage(self.cfg.reranker.first_stage)

    def _evaluate(self, bundle: Bundle, d: EvalDatasets) -> dict:
        e, r = self.cfg.eval, self.cfg.reranker
        per_dataset = evaluate_datasets(bundle, d.beir, d.sts, batch_size=e.batch_size, all_dims=True,
                                        first_stage=self._first_stage_run if r.first_stage else None,
                                        rerank_top=r.rerank_top)
        return combined(per_dataset, d.several)

    def __call__(self, bundle: Bundle) -> dict:
        return self._evaluate(bundle, self.datasets)

    def test(self, bundle: Bundle) -> dict:
        """The test side's metrics, for the one evaluation at the end of a run that chose on dev."""
        if not self.has_test:
            raise ValueError("this run has no test side apart from what it chooses on")
        return self._evaluate(bundle, self._test_datasets)
