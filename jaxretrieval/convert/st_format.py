"""sentence-transformers directories in and out: load one (or a plain Hugging Face directory) as an Embedder plus
its tokenizer, and write an Embedder back as one that `SentenceTransformer(DIR)` loads with our numbers.

sentence-transformers describes a model as a pipeline in `modules.json`: Transformer → Pooling → Dense* →
Normalize. We read each module's own config so pooling, normalization, max length and prompts are exactly what
`SentenceTransformer(dir)` would use. A plain HF directory (no modules.json) gets mean pooling unless told otherwise.
Matryoshka heads, which sentence-transformers has no module for, travel in `matryoshka.json` beside the pipeline.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from jaxretrieval.bundles import LoadedEmbedder
from jaxretrieval.convert.formats import (ACTIVATION_OF_CLASS, POOLING_FLAGS, POOLING_MODE_OF_FLAG, read_json,
                                         write_dense_folder, write_json)
from jaxretrieval.convert.hf_format import load_hf_encoder, read_hf_config, read_hf_weights
from jaxretrieval.data.tokenize import TextTokenizer
from jaxretrieval.errors import InputError
from jaxretrieval.files import resolve_model_path
from jaxretrieval.models.embedder import POOLING_MODES, DenseSpec, Embedder, EmbedderSpec
from jaxretrieval.models.params import flat_params, set_flat_params


def _pooling_modes(cfg: dict, path: Path) -> tuple[str, ...]:
    """sentence-transformers ≥ 6 writes `pooling_mode: "mean"` (or a list); older versions write one boolean
    flag per mode."""
    if "pooling_mode" in cfg:
        value = cfg["pooling_mode"]
        modes = (value,) if isinstance(value, str) else tuple(value)
        bad = [m for m in modes if m not in POOLING_MODES]
        if bad or not modes:
            raise InputError(f"unsupported pooling mode {bad or modes}; known: {list(POOLING_MODES)}", path,
                             field="pooling_mode")
        return modes
    modes = tuple(mode for flag, mode in POOLING_MODE_OF_FLAG.items() if cfg.get(flag))
    if not modes:
        raise InputError("no pooling mode is enabled", path, field="pooling_mode_*")
    return modes


def _read_dense(module_dir: Path) -> tuple[DenseSpec, dict[str, np.ndarray]]:
    cfg = read_json(module_dir / "config.json")
    act_path = cfg.get("activation_function", "torch.nn.modules.linear.Identity")
    if act_path not in ACTIVATION_OF_CLASS:
        raise InputError(f"unsupported Dense activation {act_path!r}", module_dir / "config.json",
                         field="activation_function")
    spec = DenseSpec(int(cfg["in_features"]), int(cfg["out_features"]), bool(cfg.get("bias", True)),
                     ACTIVATION_OF_CLASS[act_path])
    tensors = read_hf_weights(module_dir)
    if "linear.weight" not in tensors:
        raise InputError("Dense weights lack 'linear.weight'", module_dir)
    weights = {"kernel": tensors["linear.weight"].T}
    if spec.bias:
        weights["bias"] = tensors["linear.bias"]
    return spec, weights


def _read_matryoshka(root: Path) -> tuple[tuple[int, ...], str, list[tuple[Path, DenseSpec, dict]]]:
    """The smaller output dims export records in matryoshka.json, with each head's Dense folder (mode "heads"), so
    an exported Stella-style model comes back with every dimension it was trained with. modules.json serves only
    the main output, so sentence-transformers itself ignores this file."""
    path = root / "matryoshka.json"
    if not path.exists():
        return (), "heads", []
    info = read_json(path)
    mode, entries = info.get("mode"), info.get("dims")
    if mode not in ("heads", "slice") or not isinstance(entries, dict):
        raise InputError("expected {'mode': 'heads' | 'slice', 'dims': {dim: folder}}", path,
                         field="dims" if mode in ("heads", "slice") else "mode")
    try:
        dims = tuple(int(d) for d in entries)
    except ValueError:
        raise InputError(f"dims must be integers, got {list(entries)}", path, field="dims") from None
    folders = [root / str(f) for f in entries.values()] if mode == "heads" else []
    return dims, mode, [(folder, *_read_dense(folder)) for folder in folders]


def _prompts(root: Path) -> tuple[str, str]:
    path = root / "config_sentence_transformers.json"
    if not path.exists():
        return "", ""
    prompts = read_json(path).get("prompts") or {}
    query = prompts.get("query", "")
    doc = next((prompts[k] for k in ("document", "passage", "doc", "corpus") if k in prompts), "")
    return query, doc


def _default_max_length(transformer_dir: Path, hf_config: dict) -> int:
    tok_cfg = transformer_dir / "tokenizer_config.json"
    limit = hf_config.get("max_position_embeddings", 512)
    if tok_cfg.exists():
        model_max = read_json(tok_cfg).get("model_max_length")
        if isinstance(model_max, (int, float)) and model_max < 1e9:
            limit = min(limit, int(model_max))
    return int(limit)


def transformer_dir_of(root: Path) -> Path:
    """The directory holding the encoder's config.json and weights: the Transformer module's path in a
    sentence-transformers directory, else the directory itself."""
    modules_path = root / "modules.json"
    if modules_path.exists():
        for module in read_json(modules_path):
            if str(module.get("type", "")).rsplit(".", 1)[-1] == "Transformer":
                return root / module.get("path", "")
    return root


def load_embedder(path: str | os.PathLike, *, pooling: tuple[str, ...] | None = None, max_length: int | None = None,
                  query_prompt: str | None = None, doc_prompt: str | None = None, dtype=jnp.float32) -> LoadedEmbedder:
    """Load from disk; keyword arguments override what the directory says."""
    root = resolve_model_path(path)
    if not root.is_dir():
        raise InputError("model directory does not exist" if not root.exists() else "not a directory", root)
    modules_path = root / "modules.json"
    transformer_dir, modes, normalize, dense = root, ("mean",), False, []
    include_prompt, do_lower_case, st_max_length = True, False, None
    if modules_path.exists():
        modules = read_json(modules_path)
        for i, module in enumerate(modules):
            kind = str(module.get("type", "")).rsplit(".", 1)[-1]  # module paths moved in sentence-transformers 6
            mdir = root / module.get("path", "")
            if kind == "Transformer":
                transformer_dir = mdir
                st_cfg_path = mdir / "sentence_bert_config.json"
                if st_cfg_path.exists():
                    st_cfg = read_json(st_cfg_path)
                    st_max_length = st_cfg.get("max_seq_length")
                    do_lower_case = bool(st_cfg.get("do_lower_case", False))
            elif kind == "Pooling":
                cfg = read_json(mdir / "config.json")
                modes = _pooling_modes(cfg, mdir / "config.json")
                include_prompt = bool(cfg.get("include_prompt", True))
            elif kind == "Dense":
                dense.append(_read_dense(mdir))
            elif kind == "Normalize":
                normalize = True
            else:
                raise InputError(f"unsupported sentence-transformers module {module.get('type')!r}", modules_path,
                                 line=None, field=f"[{i}].type")
    hf_config = read_hf_config(transformer_dir)
    limit = _default_max_length(transformer_dir, hf_config)
    if max_length is not None and not 0 < max_length <= limit:
        raise InputError(f"max length {max_length} (model.max_length, --max-length) is outside 1..{limit}, the most "
                         f"this encoder takes (its max_position_embeddings and tokenizer model_max_length)",
                         transformer_dir / "config.json", field="max_position_embeddings")
    encoder, _ = load_hf_encoder(transformer_dir, dtype=dtype)
    st_query, st_doc = _prompts(root)
    dims, mode, heads = _read_matryoshka(root)
    spec = EmbedderSpec(
        pooling=tuple(pooling) if pooling else modes,
        normalize=normalize,
        max_length=int(max_length or st_max_length or limit),
        dense=tuple(d for d, _ in dense),
        query_prompt=st_query if query_prompt is None else query_prompt,
        doc_prompt=st_doc if doc_prompt is None else doc_prompt,
        include_prompt=include_prompt,
        matryoshka_dims=dims,
        matryoshka_mode=mode,
    )
    try:
        model = Embedder(encoder, spec)
    except ValueError as e:
        raise InputError(str(e), root / "matryoshka.json", field="dims") from None
    set_flat_params(model, {f"dense.{i}.{name}": w for i, (_, ws) in enumerate(dense) for name, w in ws.items()})
    for i, (folder, head, weights) in enumerate(heads):
        if (head.in_features, head.out_features, head.activation) != (model.pooled_dim, dims[i], "identity"):
            raise InputError(f"a Matryoshka head maps the pooled vector ({model.pooled_dim}) linearly to its dim "
                             f"({dims[i]}); this one is {head.in_features} -> {head.out_features}, "
                             f"{head.activation}", folder / "config.json")
        set_flat_params(model, {f"matryoshka.{i}.{name}": w for name, w in weights.items()})
    try:
        tokenizer = TextTokenizer(transformer_dir, spec.max_length, spec.query_prompt, spec.doc_prompt,
                                  include_prompt=spec.include_prompt, do_lower_case=do_lower_case,
                                  append_eos="lasttoken" in spec.pooling)
    except ValueError as e:  # a tokenizer that will not append its EOS token
        raise InputError(str(e), transformer_dir, field="eos_token") from None
    return LoadedEmbedder(model, tokenizer, root)


def _write_dense(folder: Path, dense: DenseSpec, params: dict[str, np.ndarray], prefix: str, dtype: str) -> None:
    bias = params[f"{prefix}.bias"] if dense.bias else None
    write_dense_folder(folder, params[f"{prefix}.kernel"].T, bias, dense.activation, dtype)


def write_sentence_transformers(loaded: LoadedEmbedder, out: Path, dtype: str) -> None:
    """modules.json, 1_Pooling, a Dense folder per projection head, Normalize, max length and prompts; the encoder
    files are written beforehand (hf_format.write_hf_encoder)."""
    spec = loaded.model.spec
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]
    write_json(out / "sentence_bert_config.json", {"max_seq_length": spec.max_length,
                                                   "do_lower_case": loaded.tokenizer.do_lower_case})
    pooling = {"word_embedding_dimension": loaded.model.encoder.hidden_size,
               **{flag: mode in spec.pooling for mode, flag in POOLING_FLAGS.items()},
               "include_prompt": spec.include_prompt}
    if list(spec.pooling) != [m for m in POOLING_FLAGS if m in spec.pooling]:
        raise ValueError(f"pooling {spec.pooling} is not in sentence-transformers' concatenation order")
    write_json(out / "1_Pooling" / "config.json", pooling)
    modules.append({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"})
    params = flat_params(loaded.model)
    first_dense = len(modules)
    heads = spec.matryoshka_dims if spec.matryoshka_mode == "heads" else ()
    for i, dense in enumerate(spec.dense):
        idx = len(modules)
        folder = f"{idx}_Dense" if len(spec.dense) == 1 and not heads else f"{idx}_Dense_{dense.out_features}"
        _write_dense(out / folder, dense, params, f"dense.{i}", dtype)
        modules.append({"idx": idx, "name": str(idx), "path": folder, "type": "sentence_transformers.models.Dense"})
    # Matryoshka heads map the pooled vector to their dim, as Stella v5 ships them: one `<idx>_Dense_<dim>` folder
    # each, beside the main head. modules.json uses the main output; point its Dense entry at another folder (or
    # see matryoshka.json) to serve a smaller dimension.
    pooled = loaded.model.pooled_dim
    for i, dim in enumerate(heads):
        _write_dense(out / f"{first_dense}_Dense_{dim}", DenseSpec(pooled, dim), params, f"matryoshka.{i}", dtype)
    if spec.matryoshka_dims:
        write_json(out / "matryoshka.json", {
            "mode": spec.matryoshka_mode, "main_dim": loaded.model.dim,
            "dims": {str(d): f"{first_dense}_Dense_{d}" if heads else f"first {d} values of the main output"
                     for d in spec.matryoshka_dims}})
    if spec.normalize:
        idx = len(modules)
        (out / f"{idx}_Normalize").mkdir()
        modules.append({"idx": idx, "name": str(idx), "path": f"{idx}_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
    write_json(out / "modules.json", modules)
    prompts = {k: v for k, v in (("query", spec.query_prompt), ("document", spec.doc_prompt)) if v}
    write_json(out / "config_sentence_transformers.json",
               {"prompts": prompts, "default_prompt_name": None, "similarity_fn_name": "cosine",
                "model_type": "SentenceTransformer"})
