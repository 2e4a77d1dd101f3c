"""The README.md model card every export writes: what the model is, how it was trained (when it comes from a run),
how it scored, and the lines that load it in its format's library.

A card is made from the bundle alone. A bundle opened from a run carries `trained` (door.py: the run's config, the
checkpoint's step, the newest evaluation at or before it); one opened from a model directory has none, and its
card says it was converted.
"""

from __future__ import annotations

from importlib import metadata

from jaxretrieval.bundles import Bundle

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


def _sources(train) -> list[str]:
    """data.train as a list of `name (weight)` entries: one path, or a list of sources."""
    items = train if isinstance(train, list) else [train]
    out = []
    for item in items:
        if isinstance(item, dict):
            weight = f" (weight {item['weight']})" if item.get("weight") is not None else ""
            out.append(f"`{item.get('name') or item.get('path')}`{weight}")
        else:
            out.append(f"`{item}`")
    return out


def model_card(bundle: Bundle, fmt: str) -> str:
    """Markdown for the export's README.md; the load snippet names the export's folder as `MODEL_DIR`."""
    lines = [f"# {bundle.kind} exported by jaxretrieval", "",
             f"Format: {fmt}. Written by jaxretrieval {_version()}.", ""]
    trained = getattr(bundle, "trained", None)
    if trained:
        cfg = trained["config"]
        rows = [("base model", f"`{cfg.get('model', {}).get('path')}`"), ("task", cfg.get("task", "dense")),
                ("objective", _losses(cfg)), ("training data", ", ".join(_sources(cfg.get("data", {}).get("train")))),
                ("steps", str(trained["step"])), ("batch size", str(cfg.get("batch_size"))),
                ("learning rate", str(cfg.get("learning_rate"))), ("seed", str(cfg.get("seed")))]
        lines += ["## Training", "", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), ""]
        evals = trained.get("eval") or {}
        if evals:
            where = cfg.get("eval", {})
            lines += [f"## Evaluation (step {evals['step']}: `{where.get('data') or where.get('sts')}`, split "
                      f"{where.get('split')})", "", "| metric | value |", "|---|---|",
                      *(f"| {k} | {v:.4f} |" for k, v in evals["metrics"].items()), ""]
    else:
        lines += [f"Converted from `{bundle.path}` (not trained by jaxretrieval).", ""]
    lines += ["## Use", "", "```python", LOADERS[fmt].format(path="MODEL_DIR"), "```", ""]
    if fmt == "pylate":
        lines += [f"Tested with PyLate {PYLATE_TESTED}; PyLate {PYLATE_TOO_OLD} cannot read the Dense modules "
                  f"(`use_residual`).", ""]
    return "\n".join(lines)
