"""Export to PyTorch: import → export → import is the identity, trained checkpoints load in sentence-transformers
and transformers with our embeddings (≤ 1e-4), and bad export requests fail without leaving files behind."""

import json

import numpy as np
import pytest
import torch

from hf_tiny import make_sentence_transformers_dir, tiny_embedder_dir, tiny_family, tiny_pairs_jsonl
from jaxretrieval.cli import main
from jaxretrieval.convert.export import export
from jaxretrieval.door import open_model
from jaxretrieval.convert.st_format import load_embedder
from jaxretrieval.errors import InputError
from jaxretrieval.inference import encode_texts
from jaxretrieval.models.params import flat_params

POOLING = {"bert": "pooling_mode_mean_tokens", "xlm-roberta": "pooling_mode_cls_token",
           "mpnet": "pooling_mode_mean_tokens", "qwen2": "pooling_mode_lasttoken"}
TEXTS = ["the quick brown fox", "hello", "lazy dog jumps over the fox " * 12, "world . the dog , fox",
         "over the lazy dog hello world"]  # the third is longer than max_seq_length (32)


def _family_dir(path, family):
    if family == "bert":
        return tiny_embedder_dir(path)
    tiny_family(path, family, seed=11, padding_side="left" if family == "qwen2" else "right")
    make_sentence_transformers_dir(path, {POOLING[family]: True}, normalize=True,
                                   prompts={"query": "the ", "document": ""})
    return path


def _train(run, model, data, steps=2, *extra):
    from jaxretrieval.config import load_config
    from jaxretrieval.training import run_training as train

    train(load_config(None, [f"output_dir={run}", f"model.path={model}", f"data.train={data}", "batch_size=4",
                             f"steps={steps}", "learning_rate=1e-2", "mesh.data=1", "model.max_doc_length=32",
                             "model.max_query_length=16", "log_every=1", *extra]))


def _st_vs_ours(export_dir, texts, prompt_name=None):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(export_dir), device="cpu")
    ref = st.encode(texts, prompt_name=prompt_name, convert_to_numpy=True, batch_size=3)
    ours = encode_texts(load_embedder(export_dir), texts, "query" if prompt_name else "doc", batch_size=4)
    diff = np.abs(ours - ref).max()
    print(f"export parity {export_dir.parent.name}/{export_dir.name} prompt={prompt_name}: {diff:.2e}")
    return diff


@pytest.mark.parametrize("family", ["bert", "xlm-roberta", "mpnet", "qwen2"])
def test_round_trip_and_trained_export_match_sentence_transformers(tmp_path, family):
    from transformers import AutoModel

    model = _family_dir(tmp_path / "model", family)
    # import → export → import: bit-identical parameters
    exported = export(open_model(model), tmp_path / "roundtrip")
    before, after = flat_params(load_embedder(model).model), flat_params(load_embedder(exported).model)
    assert before.keys() == after.keys()
    for k in before:
        np.testing.assert_array_equal(before[k], after[k], err_msg=k)
    # a trained checkpoint: parameters moved, export loads in both libraries and agrees with us
    run = tmp_path / "run"
    _train(run, model, tiny_pairs_jsonl(tmp_path / "d.jsonl", rows=12))
    assert main(["export", "--checkpoint", str(run), "--out", str(tmp_path / "st")]) == 0
    trained = flat_params(load_embedder(tmp_path / "st").model)
    assert any(not np.array_equal(before[k], trained[k]) for k in before)
    assert _st_vs_ours(tmp_path / "st", TEXTS) <= 1e-4
    assert _st_vs_ours(tmp_path / "st", TEXTS, prompt_name="query") <= 1e-4
    hf = AutoModel.from_pretrained(str(tmp_path / "st")).eval()
    enc = load_embedder(tmp_path / "st")
    ids = np.array([[5, 6, 7, 8, 9, 10]], np.int32)
    mask = np.ones_like(ids)
    with torch.no_grad():
        ref = hf(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask)
                 ).last_hidden_state.numpy()
    assert np.abs(np.asarray(enc.model.encoder(ids, mask)) - ref).max() <= 1e-4


def test_bfloat16_export_round_trips_rounded_values(tmp_path):
    import ml_dtypes

    model = tiny_embedder_dir(tmp_path / "m")
    out = export(open_model(model), tmp_path / "bf16", fmt="hf", dtype="bfloat16")
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    assert not (out / "modules.json").exists()  # plain HF format
    before = flat_params(load_embedder(model).model)
    after = flat_params(load_embedder(out, pooling=("mean",)).model)
    for k in before:
        np.testing.assert_array_equal(before[k].astype(ml_dtypes.bfloat16).astype(np.float32), after[k])


def test_dense_head_exports_in_sentence_transformers_layout(tmp_path):
    """An imported sentence-transformers model with a Dense projection (as Stella v5's 2_Dense_1024) exports
    its head in sentence-transformers' layout and still agrees with it."""
    from sentence_transformers import SentenceTransformer, models

    base = tiny_embedder_dir(tmp_path / "base")
    torch.manual_seed(0)
    modules = [models.Transformer(str(base), max_seq_length=32), models.Pooling(24, "mean"),
               models.Dense(24, 10, activation_function=torch.nn.Tanh()), models.Normalize()]
    with_head = SentenceTransformer(modules=modules, device="cpu")
    with_head.save(str(tmp_path / "with_head"))
    out = export(open_model(tmp_path / "with_head"), tmp_path / "out")
    modules = json.loads((out / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling", "Dense", "Normalize"]
    assert (out / "2_Dense" / "model.safetensors").exists()
    assert _st_vs_ours(out, TEXTS) <= 1e-4


def test_bad_export_requests(tmp_path):
    model = tiny_embedder_dir(tmp_path / "m")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        export(open_model(model), busy)
    assert (busy / "keep.txt").read_text() == "mine"
    with pytest.raises(InputError, match="unknown format 'onnx'"):
        export(open_model(model), tmp_path / "x", fmt="onnx")
    empty_run = tmp_path / "run"
    (empty_run / "checkpoints").mkdir(parents=True)
    with pytest.raises(InputError, match="no checkpoint"):
        export(open_model(empty_run), tmp_path / "y")
    with pytest.raises(InputError, match="no checkpoint here"):
        export(open_model(tmp_path / "busy"), tmp_path / "z")
    assert main(["export", "--checkpoint", str(model), "--out", str(busy)]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "m", "run"]  # no temp dirs left behind
    # --overwrite replaces the directory as a whole
    assert main(["export", "--checkpoint", str(model), "--out", str(busy), "--overwrite"]) == 0
    assert not (busy / "keep.txt").exists() and (busy / "modules.json").exists()


def test_real_minilm_after_training_steps_exports_with_parity(tmp_path, minilm_dir):
    from transformers import AutoModel

    run = tmp_path / "run"
    _train(run, minilm_dir, tiny_pairs_jsonl(tmp_path / "d.jsonl", rows=8), 2)
    out = export(open_model(run), tmp_path / "st")
    texts = TEXTS + ["Vitamin D deficiency is associated with an increased risk of fractures. " * 40]
    assert _st_vs_ours(out, texts) <= 1e-4  # includes texts over the 256-token max length
    assert AutoModel.from_pretrained(str(out)).config.model_type == "bert"


def test_model_max_length_trains_and_exports_beyond_the_directorys(tmp_path):
    """model.max_length overrides the directory's max_seq_length (32 here), as sentence-transformers'
    `max_seq_length = N`: training reads that many tokens and export writes it, so sentence-transformers truncates
    where training did. Beyond the encoder's position limit (64) it is an error before anything is written."""
    from jaxretrieval.config import load_config
    from jaxretrieval.train.model_setup import build_model

    model = tiny_embedder_dir(tmp_path / "m")
    data = tiny_pairs_jsonl(tmp_path / "d.jsonl", rows=12)
    run = tmp_path / "run"
    _train(run, model, data, 2, "model.max_length=48", "model.max_doc_length=48")
    cfg = load_config(run / "config.yaml", [])
    assert build_model(cfg, initialize=False).tokenizer.max_length == 48
    assert main(["export", "--checkpoint", str(run), "--out", str(tmp_path / "st")]) == 0
    assert json.loads((tmp_path / "st" / "sentence_bert_config.json").read_text())["max_seq_length"] == 48
    assert load_embedder(tmp_path / "st").tokenizer.max_length == 48
    assert _st_vs_ours(tmp_path / "st", TEXTS) <= 1e-4  # TEXTS[2] is longer than 48 tokens
    with pytest.raises(InputError, match=r"outside 1\.\.64") as err:
        _train(tmp_path / "bad", model, data, 2, "model.max_length=65")
    assert err.value.field == "max_position_embeddings" and not (tmp_path / "bad").exists()


def test_nonfinite_weights_are_refused_unless_allowed(tmp_path):
    import jax.numpy as jnp

    loaded = load_embedder(tiny_embedder_dir(tmp_path / "m"))
    kernel = loaded.model.encoder.layers[0].query.kernel
    kernel[...] = kernel[...].at[0, 0].set(jnp.nan)
    with pytest.raises(InputError, match=r"\[--allow-nonfinite\].*encoder.layers.0.query.kernel"):
        export(loaded, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert export(loaded, tmp_path / "out", allow_nonfinite=True).is_dir()


def test_a_last_token_model_ends_every_text_with_eos_in_training_and_in_its_export(tmp_path):
    """Qwen2's tokenizer appends no EOS; last-token pooling reads the EOS state (gte-Qwen2, Stella, Jasper), so
    loading adds it, and the export's tokenizer.json carries it to sentence-transformers."""
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    model = _family_dir(tmp_path / "model", "qwen2")
    eos = AutoTokenizer.from_pretrained(str(model)).eos_token_id
    assert AutoTokenizer.from_pretrained(str(model))("quick fox")["input_ids"][-1] != eos  # the base has none
    ours = load_embedder(model).tokenizer
    ids = ours.tokenize(["quick fox", "lazy dog jumps over the fox " * 20], "doc")["input_ids"]
    assert [row[-1] for row in ids] == [eos, eos] and len(ids[1]) == ours.max_length  # truncation keeps it
    out = export(open_model(model), tmp_path / "st")
    st = SentenceTransformer(str(out), device="cpu")
    features = st.tokenize(["quick fox"])
    assert features["input_ids"][0].tolist()[-1] == eos
    assert features["input_ids"][0].tolist() == ids[0]
    assert _st_vs_ours(out, TEXTS) <= 1e-4
    again = load_embedder(out).tokenizer.tokenize(["quick fox"], "doc")["input_ids"]
    assert again == ids[:1]  # a tokenizer that appends EOS already is left as it is
