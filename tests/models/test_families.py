"""The family registry: each Hugging Face model_type names a config reader, an encoder class and a name table whose
our-side names are exactly the encoder's parameters."""

import pytest
from flax import nnx

from jaxretrieval.models.families import FAMILIES
from jaxretrieval.models.params import param_shapes

TINY_HF = {"vocab_size": 40, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
           "num_key_value_heads": 1, "intermediate_size": 24, "max_position_embeddings": 40, "type_vocab_size": 2,
           "pad_token_id": 1, "rms_norm_eps": 1e-6, "relative_attention_num_buckets": 8}


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_name_table_covers_every_parameter_exactly(model_type):
    family = FAMILIES[model_type]
    assert family.name == model_type
    encoder = nnx.eval_shape(lambda: family.encoder_cls(family.config_from_hf(dict(TINY_HF)), rngs=nnx.Rngs(0)))
    ours = set(param_shapes(encoder))
    layer_names = {o.replace("{i}", str(i)) for _, o, _ in family.hf_name_table for i in range(2)}
    assert ours <= layer_names, f"parameters without a Hugging Face name: {sorted(ours - layer_names)[:5]}"
    assert all(t in ("", "T") for _, _, t in family.hf_name_table)
