"""The README.md model card every export writes: what the model is, how it was trained (when it comes from a run),
how it scored, and the lines that load it in its format's library.

A card is made from the bundle alone. A bundle opened from a run carries `trained` (door.py: the run's config, the
checkpoint's step, the newest evaluation at or before it); one opened from a model directory has none, and its
card says it was converted.
"""

from __future__ import annotations

from importlib import metadata

from jaxretrieval.bundles import Bundle
from jaxretrieval.sources import dataset_names

LOADERS = {
    "sentence-transformers": "from sentence_transformers import SentenceTransformer\n\n"
                             "model = SentenceTransformer(\"{path}\")\nvectors = model.encode([\"a query\", "
                             "\"a document\"])",
    "pylate": "from pylate import models\n\nmodel = models.ColBERT(model_name_or_path=\"{path}\")\n"
              "vectors = model.encode([\"a document\"], is_query=False)",
    "cross-encoder": "from sentence_transformers import CrossEncoder\n\nmodel = CrossEncoder(\"{path}\")\n"
                     "scores = model.predict([(\"a query\", \"a document\")])",
    "hf": "from transformers import AutoModel, AutoTokenizer\n\nmodel = AutoModel.from_pretrained(\"{path}\")\n"
          "tokenizer = AutoTokenizer.from_pretrained(\"{path}\")",
}
# PyLate releases checked against the exported Dense modules (their `use_residual` key): 1.6.0 reads them, 1.2.0
# does not; releases in between are untested.
PYLATE_TESTED, PYLATE_TOO_OLD = "1.6.0", "1.2.0"


def _version() -> str:
    try:
        return metadata.version("jaxretrieval")
    except metadata.PackageNotFoundError:
        return "(source checkout)"


def _losses(cfg: dict) -> str:
    """The training objective in words, from a run's config."""
    task = cfg.get("task", "dense")
    if task == "dense":
        loss = cfg.get("loss", {})
        text = f"{loss.get('name', 'infonce')} (temperature {loss.get('temperature')})"
    elif task == "colbert":
        text = f"ColBERT MaxSim, {cfg.get('colbert', {}).get('loss', 'contrastive')}"
    elif task == "reranker":
        text = f"cross-encoder, {cfg.get('reranker', {}).get('loss', 'listwise')}"
    else:
        d = cfg.get("distill", {})
        teachers = d.get("teacher_vectors") or d.get("teachers") or []
        text = (f"Stella/Jasper distillation from {len(teachers)} teacher(s) (cosine {d.get('cosine_weight')}, "
                f"similarity {d.get('similarity_weight')}, relative {d.get('relative_weight')})")
    dims = cfg.get("model", {}).get("matryoshka_dims") or []
    return text + (f"; Matryoshka dims {', '.join(map(str, dims))}" if dims else "")


def _sources(data: dict, task: str) -> list[str]:
    """data.train as a list of `name (weight)` entries: one path, or a list of sources and how they were mixed."""
    train = data.get("train")
    items = train if isinstance(train, list) else [train]
    weighted = data.get("sampling") == "weights"
    out = []
    for item in items:
        if isinstance(item, dict):
            weight = f" (weight {item['weight']})" if weighted and item.get("weight") is not None else ""
            out.append(f"`{item.get('name') or item.get('path')}`{weight}")
        else:
            out.append(f"`{item}`")
    if isinstance(train, list) and len(train) > 1:
        one = data.get("batch_from_one_source")
        one = task in ("dense", "colbert") if one is None else one  # as TrainConfig.one_source_batches
        batches = "one source per batch" if one else "mixed batches"
        out.append(f"sampled by {data.get('sampling', 'size')}, {batches}")
    return out


def _eval_table(where: dict, evals: dict) -> list[str]:
    """The newest eval as markdown: one row per metric, or with several datasets one row per dataset (and their
    mean) and a column per metric."""
    paths = [*_listed(where.get("data")), *_listed(where.get("sts"))]
    title = f"## Evaluation (step {evals['step']}: {', '.join(f'`{p}`' for p in paths)}, split {where.get('split')})"
    metrics, names = evals["metrics"], dataset_names(paths)
    if not any(f"{n}/" in k for k in metrics for n in names):
        return [title, "", "| metric | value |", "|---|---|", *(f"| {k} | {v:.4f} |" for k, v in metrics.items()), ""]
    columns = [k for k in metrics if k.split("/")[0] not in names]
    rows = [(n, [metrics.get(f"{n}/{c}") for c in columns]) for n in names] + [("mean", [metrics[c] for c in columns])]
    cell = lambda v: "" if v is None else f"{v:.4f}"  # noqa: E731
    return [title, "", f"| dataset | {' | '.join(columns)} |", "|---" * (len(columns) + 1) + "|",
            *(f"| {n} | {' | '.join(cell(v) for v in values)} |" for n, values in rows), ""]


def _listed(value) -> list[str]:
    """A config path setting as a list (older runs saved eval.data as one string)."""
    return [value] if isinstance(value, str) and value else list(value or [])


def model_card(bundle: Bundle, fmt: str) -> str:
    """Markdown for the export's README.md; the load snippet names the export's folder as `MODEL_DIR`."""
    lines = [f"# {bundle.kind} exported by jaxretrieval", "",
             f"Format: {fmt}. Written by jaxretrieval {_version()}.", ""]
    trained = getattr(bundle, "trained", None)
    if trained:
        cfg = trained["config"]
        sources = ", ".join(_sources(cfg.get("data", {}), cfg.get("task", "dense")))
        rows = [("base model", f"`{cfg.get('model', {}).get('path')}`"), ("task", cfg.get("task", "dense")),
                ("objective", _losses(cfg)), ("training data", sources),
                ("steps", str(trained["step"])), ("batch size", str(cfg.get("batch_size"))),
                ("learning rate", str(cfg.get("learning_rate"))), ("seed", str(cfg.get("seed")))]
        lines += ["## Training", "", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), ""]
        evals = trained.get("eval") or {}
        if evals:
            lines += _eval_table(cfg.get("eval", {}), evals)
    else:
        lines += [f"Converted from `{bundle.path}` (not trained by jaxretrieval).", ""]
    lines += ["## Use", "", "```python", LOADERS[fmt].format(path="MODEL_DIR"), "```", ""]
    if fmt == "pylate":
        lines += [f"Tested with PyLate {PYLATE_TESTED}; PyLate {PYLATE_TOO_OLD} cannot read the Dense modules "
                  f"(`use_residual`).", ""]
    return "\n".join(lines)
