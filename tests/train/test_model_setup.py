"""Config -> model: init_from loads a previous stage's parameters by name, init_fresh keeps the named ones as this
run starts them, and head_init=principal starts narrow Matryoshka heads from the student's top directions."""

import numpy as np
import pytest

from hf_tiny import distill_config, tiny_distill_data
from jaxretrieval.bundles import LoadedEmbedder
from jaxretrieval.convert.st_format import load_embedder
from jaxretrieval.data.jsonl import read_texts
from jaxretrieval.door import open_model
from jaxretrieval.errors import InputError
from jaxretrieval.inference import encode_texts
from jaxretrieval.models.params import flat_params
from jaxretrieval.train.model_setup import build_embedder, build_model
from jaxretrieval.training import run_training as train


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    return (root, *tiny_distill_data(root))


_cfg = distill_config


def test_init_fresh_restarts_the_named_parameters_and_loads_the_rest(setup, tmp_path, caplog):
    """init_fresh=head: the encoder comes from init_from, the head keeps this run's own start, an isometry with
    head_init=orthogonal, even at another width than the saved head's. A pattern that selects nothing is an
    error naming init_fresh."""
    _, student, _, texts, vectors = setup
    run = tmp_path / "stage"
    train(_cfg(run, student, texts, f"distill.teacher_vectors={vectors}", "model.head_dim=48", "steps=1",
               "save_every=1", "distill.cosine_weight=0"))
    saved = flat_params(open_model(run).model)

    def start(width, *extra):
        return flat_params(build_embedder(_cfg(tmp_path / "next", student, texts, f"distill.teacher_vectors={vectors}",
                                               f"model.head_dim={width}", "model.head_init=orthogonal",
                                               *extra)).model)

    for width in (48, 32):
        unloaded = start(width)
        caplog.clear()
        loaded = start(width, f"init_from={run}", "init_fresh=head")
        # the log tells parameters the checkpoint lacks from those it has and init_fresh restarts
        assert "0 parameters the checkpoint lacks" in caplog.text and "2 it has restart" in caplog.text
        assert sorted(k for k in loaded if not k.startswith("encoder.")) == ["dense.0.bias", "dense.0.kernel"]
        for k, v in loaded.items():
            np.testing.assert_array_equal(v, unloaded[k] if k.startswith("dense.") else saved[k], err_msg=k)
        kernel = loaded["dense.0.kernel"]  # float[24, width]
        np.testing.assert_allclose(kernel @ kernel.T, np.eye(24), atol=1e-5)
    moved = [k for k in saved if k.startswith("encoder.") and not np.array_equal(saved[k], unloaded[k])]
    assert moved  # the encoder really came from the checkpoint, not from the model directory
    with pytest.raises(InputError, match="init_fresh"):
        start(48, f"init_from={run}", "init_fresh=decoder.*")


def test_principal_matryoshka_heads_start_from_the_students_top_directions(setup, tmp_path):
    """head_init=principal: a fresh narrow Matryoshka head is the rank-d SVD of the student's pooled vectors, so its
    cosines match the student's better than a random orthogonal projection's; a head already in init_from's
    checkpoint is left as saved."""
    _, student, _, texts, vectors = setup
    base = load_embedder(student)
    sample = read_texts(texts)
    hidden = base.model.dim
    small = hidden // 4

    def cos(v):
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        return v @ v.T

    target = cos(encode_texts(base, sample))
    errors = {}
    for init in ("orthogonal", "principal"):
        cfg = _cfg(tmp_path / init, student, texts, f"distill.teacher_vectors={vectors}", "model.head_dim=24",
                   f"model.matryoshka_dims=[{small}]", f"model.head_init={init}")
        model = build_model(cfg).model
        out = encode_texts(LoadedEmbedder(model, base.tokenizer, base.path), sample, all_dims=True)
        errors[init] = np.abs(cos(out[small]) - target).mean()
        if init == "principal":
            kernel = np.asarray(model.matryoshka[0].kernel[...])
            np.testing.assert_allclose(kernel.T @ kernel, np.eye(small), atol=1e-5)
    assert errors["principal"] < 0.7 * errors["orthogonal"], errors

    # a stage whose init_from already holds the head keeps it
    run = tmp_path / "stage"
    train(_cfg(run, student, texts, f"distill.teacher_vectors={vectors}", "model.head_dim=24",
               f"model.matryoshka_dims=[{small}]", "model.head_init=principal", "steps=1", "save_every=1"))
    saved = np.asarray(open_model(run).model.matryoshka[0].kernel[...])
    again = build_model(_cfg(tmp_path / "next", student, texts, f"distill.teacher_vectors={vectors}",
                             "model.head_dim=24", f"model.matryoshka_dims=[{small}]", "model.head_init=principal",
                             f"init_from={run}")).model
    np.testing.assert_array_equal(np.asarray(again.matryoshka[0].kernel[...]), saved)
