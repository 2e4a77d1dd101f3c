"""ColBERT multi-vector model: encoder → per-token projection → L2-normalize, with padding and skiplisted tokens
masked out of the document's vector set.

The projection is a bias-free linear map (ColBERT, PyLate) or, with `projection: ffn`, a 2-layer FFN with a
residual (out = P·(gelu(W·x + b) + x)), the kind of projection mxbai-edge-colbert found better for small encoders.
Both are stacks of PyLate `Dense` modules (the FFN's first layer is a Dense with `use_residual`), so they export.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from jaxretrieval.models import layers
from jaxretrieval.models.embedder import l2_normalize


@dataclasses.dataclass(frozen=True)
class ColBERTSpec:
    dim: int = 128
    projection: str = "linear"  # linear | ffn
    reduce: str = "sum"  # MaxSim over query tokens: sum (ColBERT) | mean (RAG-Retrieval)

    def __post_init__(self):
        if self.projection not in ("linear", "ffn"):
            raise ValueError(f"projection must be linear or ffn, got {self.projection!r}")
        if self.reduce not in ("sum", "mean"):
            raise ValueError(f"reduce must be sum or mean, got {self.reduce!r}")


class ColBERT(nnx.Module):
    """(input_ids, attention_mask) int32[B, L] → (unit vectors float32[B, L, dim], vector mask int32[B, L])."""

    def __init__(self, encoder: nnx.Module, spec: ColBERTSpec, rngs: nnx.Rngs | None = None):
        rngs = rngs if rngs is not None else nnx.Rngs(0)
        h = encoder.hidden_size
        self.encoder = encoder
        self.spec = spec
        if spec.projection == "ffn":
            self.ffn = layers.linear(h, h, rngs, jnp.float32)
        self.projection = layers.linear(h, spec.dim, rngs, jnp.float32, use_bias=False)

    @property
    def dim(self) -> int:
        return self.spec.dim

    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array, vector_mask: jax.Array | None = None,
                 token_type_ids: jax.Array | None = None, dropout_key: jax.Array | None = None,
                 segment_ids: jax.Array | None = None, tokens: jax.Array | None = None
                 ) -> tuple[jax.Array, jax.Array]:
        """attention_mask says what the encoder attends to; vector_mask (default: attention_mask) says which
        token vectors take part in MaxSim (e.g. expansion tokens yes, skiplisted punctuation no). Packed rows
        (segment_ids, data/packing.py) come with tokens int32[N, Ld], the flat index of each text's j-th token
        (-1 past its end): the outputs are then the N texts' vectors [N, Ld, dim], and vector_mask, if given, is
        [N, Ld] too."""
        hidden = self.encoder(input_ids, attention_mask, token_type_ids, dropout_key=dropout_key,
                              segment_ids=segment_ids).astype(jnp.float32)
        if tokens is not None:
            hidden = hidden.reshape(-1, hidden.shape[-1])[jnp.maximum(tokens, 0)]
            attention_mask = (tokens >= 0).astype(jnp.int32)
        if self.spec.projection == "ffn":
            hidden = jax.nn.gelu(self.ffn(hidden), approximate=False) + hidden
        x = self.projection(hidden)
        mask = attention_mask if vector_mask is None else vector_mask
        return l2_normalize(x) * mask[..., None].astype(jnp.float32), mask.astype(jnp.int32)
