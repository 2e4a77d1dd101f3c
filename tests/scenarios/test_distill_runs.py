"""Distillation end to end on tiny models: precomputed and online teachers, Matryoshka heads and slices, freezing
through the optimizer, stage chaining with init_from, input errors, and export of Matryoshka heads."""

import json

import jax
import numpy as np
import pytest

from hf_tiny import distill_config, tiny_distill_data
from jaxretrieval.cli import main
from jaxretrieval.convert.export import export
from jaxretrieval.door import open_model
from jaxretrieval.convert.st_format import load_embedder
from jaxretrieval.data.jsonl import read_texts
from jaxretrieval.errors import InputError
from jaxretrieval.inference import encode_texts
from jaxretrieval.models.params import flat_params
from jaxretrieval.training import run_training as train


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    return (root, *tiny_distill_data(root))


_cfg = distill_config


def _metrics(out):
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def test_teacher_file_is_aligned_float16(setup):
    _, _, teacher, texts, vectors = setup
    v = np.load(vectors)
    assert v.dtype == np.float16 and v.shape == (len(read_texts(texts)), 24)
    np.testing.assert_allclose(np.linalg.norm(v.astype(np.float32), axis=1), 1.0, atol=2e-3)


def test_head_only_stage_then_matryoshka_stage_from_it(setup, tmp_path):
    root, student, _, texts, vectors = setup
    stage1 = tmp_path / "stage1"
    train(_cfg(stage1, student, texts, f"distill.teacher_vectors={vectors}", "model.head_dim=24",
               "optimizer.trainable=head"))
    losses = [m["loss"] for m in _metrics(stage1) if "loss" in m]
    assert np.isfinite(losses).all() and {"cosine", "similarity", "relative"} <= set(_metrics(stage1)[0])
    trained = open_model(stage1).model
    base = load_embedder(student).model
    before, after = flat_params(base), flat_params(trained)
    assert all(np.array_equal(before[k], after[k]) for k in before if k.startswith("encoder."))  # frozen
    assert "dense.0.kernel" in after and "dense.0.kernel" not in before  # the new head, trained
    # frozen parameters hold no optimizer state: Adam's moments cover only the head
    import orbax.checkpoint as ocp

    mgr = ocp.CheckpointManager(stage1 / "checkpoints")
    saved = mgr.restore(mgr.latest_step())["state"]
    mgr.close()
    moment_sizes = sum(np.size(x) for x in jax.tree.leaves(saved["opt_state"]))
    head_size = after["dense.0.kernel"].size + after["dense.0.bias"].size
    assert moment_sizes <= 2 * head_size + 16

    # stage 3 style: all parameters, Matryoshka heads, started from stage 1
    stage3 = tmp_path / "stage3"
    cfg3 = _cfg(stage3, student, texts, f"distill.teacher_vectors={vectors}", "model.head_dim=24",
                "model.matryoshka_dims=[12,6]", f"init_from={stage1}", "steps=2")
    from jaxretrieval.train.model_setup import build_embedder

    start = flat_params(build_embedder(cfg3).model)
    for k, v in after.items():
        np.testing.assert_array_equal(start[k], v, err_msg=k)  # stage 3 starts where stage 1 ended
    assert "matryoshka.0.kernel" in start
    train(cfg3)
    record = _metrics(stage3)[-1]
    assert {"d12/similarity", "d12/relative", "d6/relative"} <= set(record) and "d12/cosine" not in record

    # export writes each Matryoshka head as its own Dense folder; each serves its dimension in sentence-transformers
    out = export(open_model(stage3), tmp_path / "export")
    info = json.loads((out / "matryoshka.json").read_text())
    assert info["dims"] == {"12": "2_Dense_12", "6": "2_Dense_6"} and (out / "2_Dense_24").exists()
    from sentence_transformers import SentenceTransformer

    sample = read_texts(texts)[:5]
    ours = encode_texts(open_model(stage3), sample, all_dims=True)
    modules = json.loads((out / "modules.json").read_text())
    for dim in (24, 12):
        modules[2]["path"] = f"2_Dense_{dim}"
        (out / "modules.json").write_text(json.dumps(modules))
        ref = SentenceTransformer(str(out), device="cpu").encode(sample, convert_to_numpy=True)
        assert np.abs(ref - ours[dim]).max() <= 1e-4
    # and the export imports with every head (matryoshka.json), so `eval --all-dims` works on it too
    modules[2]["path"] = "2_Dense_24"
    (out / "modules.json").write_text(json.dumps(modules))
    reloaded = load_embedder(out)
    assert reloaded.model.dims == (24, 12, 6)
    again = encode_texts(reloaded, sample, all_dims=True)
    for dim in (24, 12, 6):
        assert np.abs(again[dim] - ours[dim]).max() <= 1e-5
    # training on from the export with the dims that made it keeps the trained heads; only a new dim starts fresh
    go_on = build_embedder(_cfg(tmp_path / "go_on", out, texts, f"distill.teacher_vectors={vectors}",
                                "model.matryoshka_dims=[12,3]", "model.head_init=principal"))
    assert go_on.model.dims == (24, 12, 3)
    kept = encode_texts(go_on, sample, all_dims=True)
    assert np.abs(kept[24] - ours[24]).max() <= 1e-5 and np.abs(kept[12] - ours[12]).max() <= 1e-5
    (out / "2_Dense_6" / "config.json").write_text(json.dumps({"in_features": 7, "out_features": 6}))
    with pytest.raises(InputError, match="maps the pooled vector"):
        load_embedder(out)


def test_online_teacher_and_slice_mode(setup, tmp_path):
    _, student, teacher, texts, _ = setup
    out = tmp_path / "online"
    train(_cfg(out, student, texts, f"distill.teachers=[{teacher}]", "model.head_dim=24",
               "model.matryoshka_dims=[8]", "model.matryoshka_mode=slice", "distill.l2_weight=1.0"))
    record = _metrics(out)[-1]
    assert np.isfinite(record["loss"]) and "l2" in record and "d8/similarity" in record


def test_distill_input_errors_before_any_step(setup, tmp_path):
    _, student, teacher, texts, vectors = setup
    short = tmp_path / "short.npy"
    np.save(short, np.zeros((3, 24), np.float32))
    empty, archive = tmp_path / "empty.npy", tmp_path / "v.npz"
    empty.write_bytes(b"")
    np.savez(archive, v=np.zeros((3, 24), np.float32))
    cases = [
        *[(["distill.teacher_vectors=" + str(bad), "model.head_dim=24"], rf"\[distill.teacher_vectors\]: {why}")
          for bad, why in ((empty, "not a readable NumPy"), (tmp_path, "not a readable NumPy"),
                           (archive, "expected one .npy matrix"))],
        ([f"distill.teacher_vectors={vectors}", "model.head_dim=24", "distill.neighbour_group=3"],
         r"\[distill.neighbour_group\]: .*must divide batch_size"),
        ([f"distill.teacher_vectors={vectors}", "model.head_dim=24", "distill.neighbour_group=4",
          "distill.neighbour_window=12"], r"\[distill.neighbour_window\]: .*positive multiple of batch_size"),
        ([f"distill.teacher_vectors={vectors}", "model.head_dim=24", "distill.relative_weight=-1"],
         r"\[distill.relative_weight\]: .*must be >= 0"),
        (["distill.teacher_vectors=" + str(short), "model.head_dim=24"], r"\[distill.teacher_vectors\]: 3 rows"),
        ([f"distill.teacher_vectors={vectors}", "model.head_dim=16"],
         r"\[model.head_dim\]: the student's output dim 16 must equal the teacher dim 24"),
        ([f"distill.teacher_vectors={vectors}", "model.head_dim=24", "optimizer.trainable=encoder.layerz.*"],
         r"\[optimizer.trainable\]: pattern 'encoder.layerz.\*' matches no parameter"),
        ([], r"distill.teacher_vectors.*exactly one"),
        ([f"distill.teachers=[{teacher}]", "model.head_dim=24", "distill.neighbour_group=4"],
         r"\[distill.neighbour_group\]: .*needs distill.teacher_vectors"),
        ([f"distill.teacher_vectors={vectors}", "model.head_dim=24", "distill.teacher_weights=[0.5,0.5]"],
         r"\[distill.teacher_weights\]: .*one weight per teacher, and there are 1 \(got \[0.5, 0.5\]\)"),
    ]
    for extra, message in cases:
        out = tmp_path / "err"
        with pytest.raises(InputError, match=message):
            train(_cfg(out, student, texts, *extra))
        assert not (out / "checkpoints").exists()


def test_layer_slice_pattern_trains_only_the_last_layer_and_head(setup, tmp_path):
    _, student, _, texts, vectors = setup
    out = tmp_path / "stage2"
    train(_cfg(out, student, texts, f"distill.teacher_vectors={vectors}", "model.head_dim=24",
               "optimizer.trainable=head,encoder.layers[-1:]", "steps=2"))
    before = flat_params(load_embedder(student).model)
    after = flat_params(open_model(out).model)
    changed = {k for k in before if not np.array_equal(before[k], after[k])}
    assert changed and all(k.startswith("encoder.layers.1.") for k in changed)  # 2 layers: only the last moved


def test_neighbour_batches_train_and_resume_exactly(setup, tmp_path, monkeypatch):
    """Teacher-neighbour batches are a function of (seed, epoch): a run stopped after step 3 and resumed logs the
    same losses as one run straight through, across an epoch boundary (50 texts, batch 8: 6 steps an epoch). The
    resume skips the principal head initialization (a forward pass over training texts), since the checkpoint
    replaces every parameter."""
    import jaxretrieval.train.model_setup as embedder

    calls = []
    real = embedder.principal_head_init
    monkeypatch.setattr(embedder, "principal_head_init", lambda *a: calls.append(1) or real(*a))
    _, student, _, texts, vectors = setup
    extra = (f"distill.teacher_vectors={vectors}", "model.head_dim=24", "distill.neighbour_group=4",
             "model.matryoshka_dims=[8]", "model.head_init=principal",
             "data.group_by_length=true", "model.dropout=false", "steps=8", "save_every=3")
    train(_cfg(tmp_path / "straight", student, texts, *extra))
    train(_cfg(tmp_path / "resumed", student, texts, *extra), stop_at_step=3)
    assert len(calls) == 2
    train(_cfg(tmp_path / "resumed", student, texts, *extra))
    assert len(calls) == 2
    a, b = _metrics(tmp_path / "straight"), _metrics(tmp_path / "resumed")
    assert [m["step"] for m in a] == [m["step"] for m in b] == list(range(1, 9))
    np.testing.assert_allclose([m["loss"] for m in a], [m["loss"] for m in b], rtol=1e-5)
    # other teacher vectors of the same name and shape: resuming against them is refused
    other = tmp_path / "other" / vectors.name
    other.parent.mkdir()
    np.save(other, np.load(vectors)[::-1])
    with pytest.raises(InputError, match="different data"):
        train(_cfg(tmp_path / "resumed", student, texts, *extra, f"distill.teacher_vectors={other}"))


def test_grad_cache_matches_the_plain_step(setup, tmp_path):
    _, student, _, texts, vectors = setup
    runs = {}
    for name, extra in (("plain", []), ("cached", ["grad_cache_chunk=4"])):
        runs[name] = tmp_path / name
        train(_cfg(runs[name], student, texts, f"distill.teacher_vectors={vectors}", "model.head_dim=24",
                   "model.matryoshka_dims=[12]", "model.dropout=false", "steps=2", *extra))
    a, b = _metrics(runs["plain"]), _metrics(runs["cached"])
    np.testing.assert_allclose([m["loss"] for m in a], [m["loss"] for m in b], atol=1e-5)
    pa = flat_params(open_model(runs["plain"]).model)
    pb = flat_params(open_model(runs["cached"]).model)
    for k in pa:
        np.testing.assert_allclose(pa[k], pb[k], atol=1e-5, err_msg=k)


def test_orthogonal_head_keeps_the_students_cosines(setup):
    """head_init=orthogonal: a head at least as wide as the pooled vector preserves every cosine of the student;
    a narrower Matryoshka head has orthonormal columns and zero bias. The default (normal) head does not."""
    from jaxretrieval.bundles import LoadedEmbedder
    from jaxretrieval.models.embedder import with_heads

    _, student, _, texts, _ = setup
    loaded = load_embedder(student)
    hidden = loaded.model.dim
    sample = read_texts(texts)[:6]

    def cosines(model):
        v = encode_texts(LoadedEmbedder(model, loaded.tokenizer, loaded.path), sample)
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        return v @ v.T

    wide = with_heads(loaded.model, head_dim=2 * hidden, matryoshka_dims=(hidden // 2,), head_init="orthogonal")
    assert wide.dim == 2 * hidden
    np.testing.assert_allclose(cosines(wide), cosines(loaded.model), atol=1e-5)
    narrow = np.asarray(wide.matryoshka[0].kernel[...])
    np.testing.assert_allclose(narrow.T @ narrow, np.eye(hidden // 2), atol=1e-5)
    assert not np.asarray(wide.matryoshka[0].bias[...]).any()
    assert np.abs(cosines(with_heads(loaded.model, head_dim=2 * hidden)) - cosines(loaded.model)).max() > 1e-2


def test_several_teacher_files_train_like_one_combined_file(setup, tmp_path):
    """distill.teacher_vectors=[a, b] combines per-teacher files the way `encode --model A --model B` does, weights
    included; with the cosine and L2 terms off, the student's width need not match the combined teacher's
    (24 vs 24 + 16)."""
    _, student, teacher, texts, _ = setup
    files = {name: tmp_path / f"{name}.npy" for name in ("a", "b", "both", "weighted")}
    weighted = ["--teacher-weight", "0.3", "--teacher-weight", "0.7"]
    for name, models, extra in (("a", [teacher], []), ("b", [student], []), ("both", [teacher, student], []),
                                ("weighted", [teacher, student], weighted)):
        args = [x for m in models for x in ("--model", str(m))]
        assert main(["encode", *args, *extra, "--input", str(texts), "--output", str(files[name])]) == 0
    assert np.load(files["both"]).shape[1] == np.load(files["a"]).shape[1] + np.load(files["b"]).shape[1]
    pair = f"[{files['a']},{files['b']}]"
    runs = {}
    for name, extra in (("files", [f"distill.teacher_vectors={pair}"]),
                        ("combined", [f"distill.teacher_vectors={files['both']}"]),
                        ("files_weighted", [f"distill.teacher_vectors={pair}", "distill.teacher_weights=[0.3,0.7]"]),
                        ("combined_weighted", [f"distill.teacher_vectors={files['weighted']}"])):
        train(_cfg(tmp_path / name, student, texts, *extra, "model.head_dim=24", "distill.cosine_weight=0",
                   "model.dropout=false", "steps=2"))
        runs[name] = _metrics(tmp_path / name)
    losses = {name: [m["loss"] for m in ms] for name, ms in runs.items()}
    assert "cosine" not in runs["files"][0] and np.isfinite(losses["files"]).all()
    np.testing.assert_allclose(losses["files"], losses["combined"], atol=1e-5)
    np.testing.assert_allclose(losses["files_weighted"], losses["combined_weighted"], atol=1e-5)
    assert np.abs(np.subtract(losses["files_weighted"], losses["files"])).max() > 1e-4  # the weights matter
