"""The shared file-format vocabulary: the two-way tables, dtype casts, and the Dense folder layout
sentence-transformers and PyLate read."""

import json

import ml_dtypes
import numpy as np
from safetensors.numpy import load_file

from jaxretrieval.convert.formats import (ACTIVATION_CLASSES, ACTIVATION_OF_CLASS, POOLING_FLAGS, POOLING_MODE_OF_FLAG,
                                          cast_tensors, read_json, write_dense_folder, write_json)
from jaxretrieval.models.embedder import POOLING_MODES


def test_each_table_reads_both_ways():
    assert {POOLING_MODE_OF_FLAG[f]: f for f in POOLING_MODE_OF_FLAG} == POOLING_FLAGS
    assert tuple(POOLING_FLAGS) == POOLING_MODES  # the Embedder pools in sentence-transformers' order
    assert {ACTIVATION_OF_CLASS[c]: c for c in ACTIVATION_OF_CLASS} == ACTIVATION_CLASSES
    assert ACTIVATION_CLASSES["identity"] == "torch.nn.modules.linear.Identity"


def test_casts_touch_floats_only():
    tensors = {"w": np.ones((2, 2), np.float64), "ids": np.arange(3, dtype=np.int64)}
    bf16 = cast_tensors(tensors, "bfloat16")
    assert bf16["w"].dtype == ml_dtypes.bfloat16 and bf16["ids"].dtype == np.int64
    assert cast_tensors(tensors, "float32")["w"].dtype == np.float32


def test_dense_folder_layout(tmp_path):
    weight = np.arange(6, dtype=np.float32).reshape(3, 2)  # [out, in]
    write_dense_folder(tmp_path / "2_Dense", weight, np.zeros(3, np.float32), "tanh", "float32")
    config = read_json(tmp_path / "2_Dense" / "config.json")
    assert config == {"in_features": 2, "out_features": 3, "bias": True,
                      "activation_function": "torch.nn.modules.activation.Tanh"}
    saved = load_file(str(tmp_path / "2_Dense" / "model.safetensors"))
    np.testing.assert_array_equal(saved["linear.weight"], weight)
    write_dense_folder(tmp_path / "pylate", weight, None, "identity", "float32", use_residual=False)
    config = read_json(tmp_path / "pylate" / "config.json")
    assert config["use_residual"] is False and config["bias"] is False
    assert sorted(load_file(str(tmp_path / "pylate" / "model.safetensors"))) == ["linear.weight"]


def test_read_json_errors_name_the_file_and_line(tmp_path):
    import pytest

    from jaxretrieval.errors import InputError

    write_json(tmp_path / "a" / "ok.json", {"x": 1})
    assert json.loads((tmp_path / "a" / "ok.json").read_text()) == {"x": 1}
    (tmp_path / "bad.json").write_text('{"x":\n}')
    with pytest.raises(InputError, match=r"bad.json:2: invalid JSON"):
        read_json(tmp_path / "bad.json")
    with pytest.raises(InputError, match="file not found"):
        read_json(tmp_path / "none.json")
