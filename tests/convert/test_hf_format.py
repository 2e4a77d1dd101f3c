"""Hugging Face directories in and out: names map both ways through one table, unused source tensors are carried
into an export, and a checkpoint that lacks a parameter is refused naming it."""

import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from hf_tiny import tiny_bert, tiny_family
from jaxretrieval.convert.hf_format import (family_of, hf_tensors, load_hf_encoder, map_hf_names, read_hf_config,
                                            read_hf_weights, write_hf_encoder)
from jaxretrieval.convert.st_format import load_embedder
from jaxretrieval.errors import InputError
from jaxretrieval.models.params import flat_params


@pytest.mark.parametrize("family", ["bert", "xlm-roberta", "mpnet", "qwen2"])
def test_names_map_both_ways(tmp_path, family):
    path = tiny_bert(tmp_path / "m") if family == "bert" else tiny_family(tmp_path / "m", family)
    fam = family_of(read_hf_config(path), path / "config.json")
    mapped, _ = map_hf_names(read_hf_weights(path), fam)
    encoder, _ = load_hf_encoder(path)
    ours = flat_params(encoder)
    assert set(ours) <= set(mapped)
    back = hf_tensors(ours, fam)
    mapped_again, unmatched = map_hf_names(back, fam)
    assert not unmatched and set(mapped_again) == set(ours)
    for k in ours:
        np.testing.assert_array_equal(mapped_again[k], ours[k])


def test_export_carries_the_tensors_the_encoder_does_not_use(tmp_path):
    path = tiny_bert(tmp_path / "m")
    loaded = load_embedder(path)
    out = tmp_path / "out"
    out.mkdir()
    write_hf_encoder(loaded.model, loaded.tokenizer.tokenizer, path, 24, out, "float32")
    written = load_file(str(out / "model.safetensors"))
    source = read_hf_weights(path)
    assert any(k.startswith("pooler.") for k in written)  # BERT's pooler rides along
    assert {k.removeprefix("bert.") for k in source} <= set(written)
    assert json.loads((out / "config.json").read_text())["dtype"] == "float32"
    assert json.loads((out / "tokenizer_config.json").read_text())["model_max_length"] == 24


def test_a_missing_parameter_is_named(tmp_path):
    path = tiny_bert(tmp_path / "m")
    tensors = read_hf_weights(path)
    dropped = next(k for k in tensors if "layer.1.attention.self.query.weight" in k)
    del tensors[dropped]
    save_file(tensors, str(path / "model.safetensors"))
    with pytest.raises(InputError, match="lacks 1 parameters.*layers.1.query.kernel"):
        load_hf_encoder(path)
    (path / "config.json").write_text(json.dumps({**read_hf_config(path), "model_type": "t5"}))
    with pytest.raises(InputError, match=r"\[model_type\]: unsupported model_type 't5'"):
        load_hf_encoder(path)
