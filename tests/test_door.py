"""open_model is the one door from a path to a bundle: each kind of directory is recognised in one place and
opens as the bundle its kind says."""

import numpy as np
import pytest

from hf_tiny import tiny_bert, tiny_embedder_dir, tiny_pairs_jsonl
from jaxretrieval.bundles import COLBERT, EMBEDDER, RERANKER
from jaxretrieval.config import ColBERTConfig, load_config
from jaxretrieval.convert.cross_encoder_format import load_reranker
from jaxretrieval.convert.export import export
from jaxretrieval.convert.pylate_format import load_colbert
from jaxretrieval.door import (CROSS_ENCODER, HUGGING_FACE, PYLATE, RUN, SENTENCE_TRANSFORMERS, directory_kind,
                               open_model)
from jaxretrieval.errors import InputError
from jaxretrieval.models.params import flat_params
from jaxretrieval.train.checkpoint import restore_params
from jaxretrieval.train.loop import train


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("door")
    st = tiny_embedder_dir(root / "st")
    hf = tiny_bert(root / "hf")
    export(load_colbert(hf, ColBERTConfig(query_prefix="", doc_prefix="")), root / "pylate", fmt="pylate")
    export(load_reranker(hf), root / "ce", fmt="cross-encoder")
    run = root / "run"
    data = tiny_pairs_jsonl(root / "d.jsonl")
    train(load_config(None, [f"output_dir={run}", f"model.path={st}", f"data.train={data}", "batch_size=8",
                             "steps=2", "save_every=1", "mesh.data=1", "learning_rate=1e-3"]))
    return {"st": st, "hf": hf, "pylate": root / "pylate", "ce": root / "ce", "run": run,
            "checkpoint": run / "checkpoints" / "1"}


@pytest.mark.parametrize("name, kind, bundle_kind", [
    ("st", SENTENCE_TRANSFORMERS, EMBEDDER), ("hf", HUGGING_FACE, EMBEDDER), ("pylate", PYLATE, COLBERT),
    ("ce", CROSS_ENCODER, RERANKER), ("run", RUN, EMBEDDER), ("checkpoint", RUN, EMBEDDER)])
def test_each_directory_kind_opens_as_its_bundle(dirs, name, kind, bundle_kind):
    assert directory_kind(dirs[name]) == kind
    assert open_model(dirs[name]).kind == bundle_kind


def test_a_run_opens_with_the_parameters_of_the_checkpoint_asked_for(dirs):
    for path, step in ((dirs["run"], 2), (dirs["checkpoint"], 1)):
        saved, _ = restore_params(dirs["run"], step)
        ours = flat_params(open_model(path).model)
        assert set(ours) == set(saved)
        for k in saved:
            np.testing.assert_array_equal(ours[k], saved[k])
    assert not np.array_equal(flat_params(open_model(dirs["run"]).model)["encoder.layers.0.query.kernel"],
                              flat_params(open_model(dirs["st"]).model)["encoder.layers.0.query.kernel"])


def test_embedder_overrides_and_bad_paths(dirs, tmp_path):
    loaded = open_model(dirs["hf"], pooling="cls,mean", max_length=16)
    assert loaded.model.spec.pooling == ("cls", "mean") and loaded.tokenizer.max_length == 16
    with pytest.raises(InputError, match="does not exist"):
        open_model(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="got a file"):
        open_model(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no checkpoint here"):
        open_model(tmp_path / "empty")
    with pytest.raises(InputError, match=r"outside 1\.\."):
        open_model(dirs["hf"], max_length=1000)
