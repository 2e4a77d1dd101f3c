"""PyLate (ColBERT) directories in and out: start from any encoder directory (new projection) or a PyLate directory
(its Dense projection and ColBERT settings), and write the PyLate layout that `pylate.models.ColBERT(DIR)` loads:

    modules.json                       Transformer, then one `pylate.models.Dense.Dense` per projection layer
    config.json, model.safetensors,    the encoder (hf_format.write_hf_encoder)
    tokenizer files
    1_Dense/ (2_Dense/)                config.json (in/out features, bias, activation, use_residual),
                                       model.safetensors (linear.weight [out, in])
    config_sentence_transformers.json  query/document prefix and length, expansion, skiplist, MaxSim
"""

from __future__ import annotations

import os
from pathlib import Path

import flax.nnx as nnx
import jax.numpy as jnp
import numpy as np

from jaxretrieval.bundles import LoadedColBERT
from jaxretrieval.config import ColBERTConfig
from jaxretrieval.convert.formats import read_json, write_dense_folder, write_json
from jaxretrieval.convert.hf_format import load_hf_encoder, read_hf_weights
from jaxretrieval.convert.st_format import load_embedder, transformer_dir_of
from jaxretrieval.data.colbert_tokens import ColBERTTokenizer
from jaxretrieval.data.tokenize import TextTokenizer
from jaxretrieval.errors import InputError
from jaxretrieval.files import resolve_model_path
from jaxretrieval.models.colbert import ColBERT, ColBERTSpec
from jaxretrieval.models.params import flat_params, set_flat_params


def is_pylate_dir(path: Path) -> bool:
    cfg = path / "config_sentence_transformers.json"
    return cfg.exists() and read_json(cfg).get("similarity_fn_name") == "MaxSim"


def _pylate_dense(root: Path) -> list[tuple[dict, dict[str, np.ndarray]]]:
    out = []
    for i, module in enumerate(read_json(root / "modules.json")):
        if module.get("type", "").rsplit(".", 1)[-1] != "Dense":
            continue
        mdir = root / module["path"]
        cfg = read_json(mdir / "config.json")
        out.append((cfg, read_hf_weights(mdir)))
    return out


def load_colbert(path: str | os.PathLike, cfg: ColBERTConfig | None = None, seed: int = 0,
                 dtype=jnp.float32) -> LoadedColBERT:
    """A PyLate directory keeps its projection and settings (cfg may override lengths); any other encoder
    directory gets a fresh projection built from cfg. dtype: the encoder's compute dtype (parameters stay
    float32; the projection and MaxSim run in float32)."""
    root = resolve_model_path(path)
    cfg = cfg or ColBERTConfig()
    if root.is_dir() and is_pylate_dir(root):
        st = read_json(root / "config_sentence_transformers.json")
        dense = _pylate_dense(root)
        projection = "ffn" if len(dense) == 2 and dense[0][0].get("use_residual") else "linear"
        if len(dense) not in (1, 2) or dense[-1][0].get("bias") or dense[-1][0].get("use_residual"):
            raise InputError("unsupported PyLate projection (expected one bias-free Dense, or a residual GELU "
                             "Dense followed by one)", root / "modules.json")
        spec = ColBERTSpec(dim=int(dense[-1][0]["out_features"]), projection=projection, reduce=cfg.reduce)
        tdir = transformer_dir_of(root)
        encoder, hf_config = load_hf_encoder(tdir, dtype=dtype)
        st_cfg = read_json(tdir / "sentence_bert_config.json") if (tdir / "sentence_bert_config.json").exists() else {}
        text = TextTokenizer(tdir, hf_config.get("max_position_embeddings", 512),
                             do_lower_case=bool(st_cfg.get("do_lower_case", False)))
        model = ColBERT(encoder, spec)
        weights = {"projection.kernel": dense[-1][1]["linear.weight"].T}
        if projection == "ffn":
            weights.update({"ffn.kernel": dense[0][1]["linear.weight"].T, "ffn.bias": dense[0][1]["linear.bias"]})
        set_flat_params(model, weights)
        tok = ColBERTTokenizer(text, int(st.get("query_length", cfg.query_length)),
                               int(st.get("document_length", cfg.doc_length)), st.get("query_prefix", "[Q] "),
                               st.get("document_prefix", "[D] "), bool(st.get("attend_to_expansion_tokens", False)),
                               custom_skiplist=st.get("skiplist_words"))
        return LoadedColBERT(model, tok, root)
    loaded = load_embedder(root, query_prompt="", doc_prompt="", dtype=dtype)  # markers replace the prompts
    spec = ColBERTSpec(dim=cfg.dim, projection=cfg.projection, reduce=cfg.reduce)
    model = ColBERT(loaded.model.encoder, spec, rngs=nnx.Rngs(seed))
    tok = ColBERTTokenizer(loaded.tokenizer, cfg.query_length, cfg.doc_length, cfg.query_prefix, cfg.doc_prefix,
                           cfg.attend_to_expansion_tokens, cfg.skiplist)
    return LoadedColBERT(model, tok, loaded.path)


def write_pylate(loaded: LoadedColBERT, out: Path, dtype: str) -> None:
    """The PyLate-specific files; the encoder files are written beforehand (hf_format.write_hf_encoder)."""
    params = flat_params(loaded.model)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]
    layers = []
    if loaded.model.spec.projection == "ffn":
        layers.append((params["ffn.kernel"].T, params["ffn.bias"], "gelu", True))
    layers.append((params["projection.kernel"].T, None, "identity", False))
    for weight, bias, activation, residual in layers:
        idx = len(modules)
        write_dense_folder(out / f"{idx}_Dense", weight, bias, activation, dtype, use_residual=residual)
        modules.append({"idx": idx, "name": str(idx), "path": f"{idx}_Dense", "type": "pylate.models.Dense.Dense"})
    write_json(out / "modules.json", modules)
    tok = loaded.tokenizer
    write_json(out / "sentence_bert_config.json", {"max_seq_length": tok.doc_length,
                                                    "do_lower_case": tok.text.do_lower_case})
    write_json(out / "config_sentence_transformers.json", {
        "prompts": {"query": "", "document": ""}, "default_prompt_name": None, "similarity_fn_name": "MaxSim",
        "model_type": "ColBERT",
        "query_prefix": tok.marker_tokens["query"] or "", "document_prefix": tok.marker_tokens["doc"] or "",
        "query_length": tok.query_length, "document_length": tok.doc_length,
        "attend_to_expansion_tokens": tok.attend_to_expansion_tokens, "skiplist_words": tok.skiplist_words,
        "do_query_expansion": True})
