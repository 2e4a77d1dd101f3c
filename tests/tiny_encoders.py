"""Tiny random nnx encoders built directly (no Hugging Face directory), for unit tests of heads and models."""

from flax import nnx

from jaxretrieval.models.bert import BertConfig, BertEncoder

TINY = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                  max_position_embeddings=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def tiny_bert_encoder(seed: int = 0) -> BertEncoder:
    return BertEncoder(TINY, rngs=nnx.Rngs(seed))
