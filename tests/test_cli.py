"""`jaxretrieval encode` / `eval` end to end on tiny data, and one-line errors for bad input."""

import json

import numpy as np
import pytest

from hf_tiny import tiny_beir, tiny_embedder_dir
from jaxretrieval.cli import main
from jaxretrieval.convert.st_format import load_embedder
from jaxretrieval.inference import encode_texts


@pytest.fixture(scope="module")
def tiny_st(tmp_path_factory):
    return tiny_embedder_dir(tmp_path_factory.mktemp("model") / "m")


def test_encode_txt_and_jsonl(tmp_path, tiny_st, capsys):
    (tmp_path / "in.txt").write_text("hello world\nquick fox\n\nlazy dog\n")
    assert main(["encode", "--model", str(tiny_st), "--input", str(tmp_path / "in.txt"),
                 "--output", str(tmp_path / "out.npy"), "--kind", "query", "--batch-size", "3"]) == 0
    out = np.load(tmp_path / "out.npy")
    assert out.shape == (4, 24) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    expect = encode_texts(load_embedder(tiny_st), ["hello world", "quick fox", "", "lazy dog"], kind="query")
    np.testing.assert_allclose(out, expect, atol=1e-6)

    (tmp_path / "in.jsonl").write_text('{"text": "fox", "title": "quick"}\n{"text": "dog"}\n')
    assert main(["encode", "--model", str(tiny_st), "--input", str(tmp_path / "in.jsonl"),
                 "--output", str(tmp_path / "docs.npy")]) == 0
    docs = np.load(tmp_path / "docs.npy")
    np.testing.assert_allclose(docs, encode_texts(load_embedder(tiny_st), ["quick fox", "dog"]), atol=1e-6)


def test_encode_in_bfloat16_compute(tmp_path, tiny_st):
    """--compute-dtype bfloat16 runs the encoder's products in bfloat16 (the model really is built so) and still
    writes float32 vectors close to the float32 ones; a dtype it does not know is refused by argparse (exit 2)."""
    import jax.numpy as jnp
    import pytest

    from jaxretrieval.door import open_model

    (tmp_path / "in.txt").write_text("hello world\nquick brown fox jumps\nlazy dog\n")
    out = {}
    for dtype in ("float32", "bfloat16"):
        assert main(["encode", "--model", str(tiny_st), "--input", str(tmp_path / "in.txt"), "--compute-dtype",
                     dtype, "--output", str(tmp_path / f"{dtype}.npy")]) == 0
        out[dtype] = np.load(tmp_path / f"{dtype}.npy")
    assert out["bfloat16"].dtype == np.float32 and not np.array_equal(out["bfloat16"], out["float32"])
    assert (out["bfloat16"] * out["float32"]).sum(axis=1).min() > 0.99
    assert open_model(tiny_st, compute_dtype="bfloat16").model.encoder.embeddings.word_embeddings.dtype == jnp.bfloat16
    with pytest.raises(SystemExit) as e:
        main(["encode", "--model", str(tiny_st), "--input", str(tmp_path / "in.txt"), "--compute-dtype", "fp8",
              "--output", str(tmp_path / "x.npy")])
    assert e.value.code == 2


def test_eval_prints_one_json_line(tmp_path, tiny_st, capsys):
    corpus = [{"_id": f"d{i}", "title": "t" if i % 2 else "", "text": w}
              for i, w in enumerate(["quick fox", "lazy dog", "hello world", "brown fox", "the dog jumps"])]
    queries = [{"_id": "q1", "text": "fox"}, {"_id": "q2", "text": "dog"}, {"_id": "q3", "text": "unjudged"}]
    data = tiny_beir(tmp_path / "beir", corpus, queries, [("q1", "d0", 1), ("q1", "d3", 1), ("q2", "d1", 2)])
    assert main(["eval", "--model", str(tiny_st), "--data", str(data)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    metrics = json.loads(lines[0])
    assert metrics["num_queries"] == 2 and metrics["num_docs"] == 5
    assert set(metrics) >= {"ndcg@10", "recall@100", "mrr@10"}
    assert metrics["recall@100"] == 1.0  # 5 docs, all retrieved
    assert 0 < metrics["ndcg@10"] <= 1 and 0 < metrics["mrr@10"] <= 1


def _error_of(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_missing_model_directory(tmp_path, capsys):
    (tmp_path / "in.txt").write_text("x\n")
    err = _error_of(capsys, ["encode", "--model", str(tmp_path / "nope"), "--input", str(tmp_path / "in.txt"),
                             "--output", str(tmp_path / "o.npy")])
    assert str(tmp_path / "nope") in err and "does not exist" in err
    assert not (tmp_path / "o.npy").exists()


def test_unsupported_model_type(tmp_path, capsys, tiny_st):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(tiny_st, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["model_type"] = "t5"
    (bad / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "in.txt").write_text("x\n")
    err = _error_of(capsys, ["encode", "--model", str(bad), "--input", str(tmp_path / "in.txt"),
                             "--output", str(tmp_path / "o.npy")])
    assert "config.json" in err and "model_type" in err and "'t5'" in err


def test_missing_weights(tmp_path, capsys, tiny_st):
    import shutil

    bad = tmp_path / "noweights"
    shutil.copytree(tiny_st, bad)
    (bad / "model.safetensors").unlink()
    (tmp_path / "in.txt").write_text("x\n")
    err = _error_of(capsys, ["encode", "--model", str(bad), "--input", str(tmp_path / "in.txt"),
                             "--output", str(tmp_path / "o.npy")])
    assert "model.safetensors" in err and "pytorch_model.bin" in err


@pytest.mark.parametrize("content,expect", [
    ('{"text": "ok"}\n{"text": "ok", \n', ":2: not valid JSON"),
    ('{"text": "ok"}\n\n{"title": "no text"}\n', ":3 [text]: missing field 'text'"),
    ('["a list"]\n', ":1: expected a JSON object"),
])
def test_bad_jsonl_lines(tmp_path, capsys, tiny_st, content, expect):
    (tmp_path / "in.jsonl").write_text(content)
    err = _error_of(capsys, ["encode", "--model", str(tiny_st), "--input", str(tmp_path / "in.jsonl"),
                             "--output", str(tmp_path / "o.npy")])
    assert str(tmp_path / "in.jsonl") + expect in err


def test_beir_without_qrels_for_split(tmp_path, capsys, tiny_st):
    data = tiny_beir(tmp_path / "beir", [{"_id": "d", "text": "x"}], [{"_id": "q", "text": "y"}], [("q", "d", 1)],
                 split="train")
    err = _error_of(capsys, ["eval", "--model", str(tiny_st), "--data", str(data), "--split", "test"])
    assert "qrels/test.tsv" in err and "train" in err


def test_compilation_cache_on_accelerators_only(monkeypatch, tmp_path):
    """GPU/TPU runs get JAX's persistent cache by default, CPU runs do not, and JAX_COMPILATION_CACHE_DIR (empty:
    off) overrides both."""
    import jax

    from jaxretrieval import cli

    before = jax.config.jax_compilation_cache_dir
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.setattr(cli, "DEFAULT_COMPILATION_CACHE", tmp_path / "xla")
    try:
        assert cli.configure_compilation_cache() is None  # these tests run on CPU
        assert jax.config.jax_compilation_cache_dir == before
        monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
        assert cli.configure_compilation_cache() == str(tmp_path / "xla")
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "xla")
        jax.config.update("jax_compilation_cache_dir", before)
        monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "")
        assert cli.configure_compilation_cache() is None
        assert jax.config.jax_compilation_cache_dir == before
    finally:
        jax.config.update("jax_compilation_cache_dir", before)


def test_eval_on_several_datasets_prints_a_line_each_and_the_mean(tmp_path, tiny_st, capsys):
    corpus = [{"_id": f"d{i}", "text": w} for i, w in enumerate(["quick fox", "lazy dog", "hello world"])]
    queries = [{"_id": "q1", "text": "fox"}, {"_id": "q2", "text": "dog"}]
    a = tiny_beir(tmp_path / "a", corpus, queries, [("q1", "d0", 1), ("q2", "d1", 1)])
    b = tiny_beir(tmp_path / "b", corpus, queries, [("q1", "d2", 1)])
    assert main(["eval", "--model", str(tiny_st), "--data", str(a), "--data", str(b)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert [x["dataset"] for x in lines] == ["a", "b", "mean"]
    assert lines[2]["ndcg@10"] == pytest.approx((lines[0]["ndcg@10"] + lines[1]["ndcg@10"]) / 2, abs=1e-6)
    assert not any("/" in k for k in lines[2])


def test_encode_through_the_torch_backend(tmp_path, tiny_st):
    """--backend torch computes the same vectors through sentence-transformers (float32: within 1e-5 of ours; the
    bfloat16 ones close to them); it refuses what it cannot serve with one line and exit 2."""
    (tmp_path / "in.txt").write_text("hello world\nquick brown fox jumps\nlazy dog\n")
    run = lambda *extra, out="x.npy": main(["encode", "--model", str(tiny_st), "--input",  # noqa: E731
                                            str(tmp_path / "in.txt"), "--output", str(tmp_path / out), *extra])
    assert run(out="jax.npy") == 0 and run("--backend", "torch", out="torch.npy") == 0
    jax_vecs, torch_vecs = np.load(tmp_path / "jax.npy"), np.load(tmp_path / "torch.npy")
    assert np.abs(jax_vecs - torch_vecs).max() <= 1e-5
    assert run("--backend", "torch", "--compute-dtype", "bfloat16", out="bf16.npy") == 0
    assert (np.load(tmp_path / "bf16.npy") * jax_vecs).sum(axis=1).min() > 0.99
    assert main(["eval", "--model", str(tiny_st), "--data", str(tmp_path), "--all-dims", "--backend", "torch"]) == 2
