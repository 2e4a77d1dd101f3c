"""ColBERT: tokenization (markers, expansion, skiplist), training with contrastive and distillation losses,
sharding invariance, MaxSim search, PyLate export (checked by PyLate itself when a PyLate venv exists)."""

import json
import os
import subprocess
from pathlib import Path

import jax
import numpy as np
import pytest

from hf_tiny import tiny_embedder_dir, tiny_pairs_jsonl
from jaxretrieval.config import load_config
from jaxretrieval.convert.export import export
from jaxretrieval.door import open_model
from jaxretrieval.eval.colbert_search import encode_token_vectors, maxsim_search
from jaxretrieval.losses.maxsim import maxsim_dense
from jaxretrieval.training import run_training as train

# PyLate pins older sentence-transformers/transformers than ours, so it lives in its own venv, which `make test`
# builds and then requires (REQUIRE_PYLATE=1): in CI the check runs, it is never skipped
PYLATE_PYTHON = Path(os.environ.get("PYLATE_PYTHON", Path(__file__).resolve().parents[2] / ".venv-pylate/bin/python"))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("colbert")
    model = tiny_embedder_dir(root / "model")
    vocab = (model / "vocab.txt").read_text().splitlines()
    vocab[5:7] = ["[unused0]", "[unused1]"]  # ColBERT's marker tokens, as BERT vocabularies have them
    (model / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (model / "tokenizer.json").unlink(missing_ok=True)  # rebuilt from vocab.txt
    data = tiny_pairs_jsonl(root / "d.jsonl", rows=16, negatives=3)
    scored = root / "scored.jsonl"
    rng = np.random.default_rng(0)
    records = [json.loads(x) for x in data.read_text().splitlines()]
    for r in records:
        r["pos_scores"] = [float(rng.normal() + 2)]
        r["neg_scores"] = [float(rng.normal()) for _ in r["neg"]]
    scored.write_text("".join(json.dumps(r) + "\n" for r in records))
    return model, data, scored


def _cfg(out, model, data, *extra):
    return load_config(None, [f"output_dir={out}", "task=colbert", f"model.path={model}", f"data.train={data}",
                              "batch_size=8", "steps=3", "learning_rate=1e-3", "log_every=1", "save_every=3",
                              "data.num_negatives=2", "colbert.dim=16", "colbert.query_length=8",
                              "colbert.doc_length=24", *extra])


def _losses(out):
    return [json.loads(x)["loss"] for x in (out / "metrics.jsonl").read_text().splitlines() if "loss" in x]


@pytest.mark.parametrize("loss", ["contrastive", "distill"])
def test_training_one_and_eight_devices_agree(setup, tmp_path, loss):
    model, data, scored = setup
    source = scored if loss == "distill" else data
    extra = [f"colbert.loss={loss}", "colbert.projection=ffn" if loss == "distill" else "colbert.reduce=sum"]
    train(_cfg(tmp_path / "one", model, source, "mesh.data=1", *extra))
    train(_cfg(tmp_path / "eight", model, source, *extra))
    one, eight = _losses(tmp_path / "one"), _losses(tmp_path / "eight")
    assert len(one) == 3 and np.isfinite(one).all()
    np.testing.assert_allclose(one, eight, atol=1e-5)
    assert jax.device_count() == 8


def test_distill_needs_teacher_scores(setup, tmp_path):
    from jaxretrieval.errors import InputError

    model, data, _ = setup
    with pytest.raises(InputError, match="pos_scores"):
        train(_cfg(tmp_path / "x", model, data, "colbert.loss=distill"))


def test_search_matches_brute_force_and_export_round_trips(setup, tmp_path):
    model, data, _ = setup
    run = tmp_path / "run"
    train(_cfg(run, model, data))
    loaded = open_model(run)
    docs = ["the quick brown fox", "lazy dog , hello", "world . world", "over the fox jumps", "hello"]
    queries = ["fox", "hello world"]
    d = encode_token_vectors(loaded, docs, "doc")
    q = encode_token_vectors(loaded, queries, "query")
    scores, index = maxsim_search(q, d, top_k=3, doc_chunk=2, query_chunk=1)
    for qi in range(2):
        qv = q[0][q[1][qi]:q[1][qi + 1]].astype(np.float32)
        brute = [float(maxsim_dense(qv[None], np.ones((1, len(qv))), d[0][d[1][j]:d[1][j + 1]].astype(np.float32)[None],
                                    np.ones((1, d[1][j + 1] - d[1][j])))[0, 0]) for j in range(5)]
        np.testing.assert_allclose(scores[qi], np.sort(brute)[::-1][:3], rtol=1e-3, atol=1e-3)
        assert index[qi, 0] == int(np.argmax(brute))
    out = export(open_model(run), tmp_path / "pylate", fmt="pylate")
    cfg = json.loads((out / "config_sentence_transformers.json").read_text())
    assert cfg["query_prefix"] == "[unused0]" and cfg["similarity_fn_name"] == "MaxSim"
    again = open_model(out)  # our reader of the PyLate layout
    d2 = encode_token_vectors(again, docs, "doc")
    np.testing.assert_array_equal(d[1], d2[1])
    np.testing.assert_allclose(d[0].astype(np.float32), d2[0].astype(np.float32), atol=2e-3)
    if not PYLATE_PYTHON.exists():
        message = f"no PyLate interpreter at {PYLATE_PYTHON} (`make test` builds it; or set PYLATE_PYTHON)"
        if os.environ.get("REQUIRE_PYLATE") == "1":
            pytest.fail(message)
        pytest.skip(message + " for the cross-library check")
    f32 = lambda texts, kind: encode_token_vectors(again, texts, kind, dtype=np.float32)[0]  # noqa: E731
    ours = {"q": [v.tolist() for v in np.split(f32(queries, "query"), q[1][1:-1])],
            "d": [v.tolist() for v in np.split(f32(docs, "doc"), d[1][1:-1])]}
    script = tmp_path / "pylate_check.py"
    script.write_text(PYLATE_CHECK)
    result = subprocess.run([str(PYLATE_PYTHON), str(script), str(out), json.dumps(queries), json.dumps(docs)],
                            capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    theirs = json.loads(result.stdout.strip().splitlines()[-1])
    worst = 0.0
    for kind in ("q", "d"):
        for a, b in zip(ours[kind], theirs[kind]):
            assert np.shape(a) == np.shape(b)
            worst = max(worst, float(np.abs(np.array(a) - np.array(b)).max()))
    print(f"PyLate token vectors vs ours: max abs diff {worst:.2e}")
    assert worst <= 1e-4


PYLATE_CHECK = """
import json, sys
from pylate import models
m = models.ColBERT(model_name_or_path=sys.argv[1], device="cpu")
q = m.encode(json.loads(sys.argv[2]), is_query=True, convert_to_numpy=True)
d = m.encode(json.loads(sys.argv[3]), is_query=False, convert_to_numpy=True)
print(json.dumps({"q": [x.tolist() for x in q], "d": [x.tolist() for x in d]}))
"""


def test_grad_cache_matches_the_plain_step(setup, tmp_path):
    from jaxretrieval.models.params import flat_params

    model, data, _ = setup
    for name, extra in (("plain", []), ("cached", ["grad_cache_chunk=4"])):
        train(_cfg(tmp_path / name, model, data, "model.dropout=false", "steps=2", *extra))
    np.testing.assert_allclose(_losses(tmp_path / "plain"), _losses(tmp_path / "cached"), atol=1e-5)
    pa = flat_params(open_model(tmp_path / "plain").model)
    pb = flat_params(open_model(tmp_path / "cached").model)
    for k in pa:
        np.testing.assert_allclose(pa[k], pb[k], atol=1e-5, err_msg=k)
