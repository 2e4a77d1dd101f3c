"""A model together with what using it takes: its tokenizer, the directory it came from, and its kind.

These bundles are what every layer above the models passes around: import builds them, inference, evaluation and
training use them, export writes them. They live below all of those, so none of them has to import another to
name the type. `kind` is the one spelling of "what sort of model is this" that dispatching code looks at.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar, Union

from jaxretrieval.data.colbert_tokens import ColBERTTokenizer
from jaxretrieval.data.pair_tokens import PairTokenizer
from jaxretrieval.data.tokenize import TextTokenizer
from jaxretrieval.models.colbert import ColBERT
from jaxretrieval.models.embedder import Embedder
from jaxretrieval.models.reranker import CrossEncoder

EMBEDDER, COLBERT, RERANKER = "embedder", "colbert", "reranker"


@dataclasses.dataclass
class LoadedEmbedder:
    """A dense embedder: one vector per text."""

    model: Embedder
    tokenizer: TextTokenizer
    path: Path  # the model directory it was loaded from (its encoder files are carried into an export)
    # from a run: its config, the step, the newest eval at or before it (door.py); keyword-only
    trained: dict | None = dataclasses.field(default=None, kw_only=True)
    # another engine that computes this model's vectors (convert/torch_backend.TorchEmbedder: an object with
    # encode(texts, kind, batch_size, progress) → float32[N, dim]); None = this package's jit forward
    backend: object | None = dataclasses.field(default=None, kw_only=True)
    kind: ClassVar[str] = EMBEDDER


@dataclasses.dataclass
class LoadedColBERT:
    """A late-interaction model: one vector per token."""

    model: ColBERT
    tokenizer: ColBERTTokenizer
    path: Path
    # from a run: its config, the step, the newest eval at or before it (door.py); keyword-only
    trained: dict | None = dataclasses.field(default=None, kw_only=True)
    kind: ClassVar[str] = COLBERT


@dataclasses.dataclass
class LoadedReranker:
    """A cross-encoder: one relevance logit per (query, document) pair."""

    model: CrossEncoder
    tokenizer: PairTokenizer
    path: Path  # the directory of the encoder's config.json
    # from a run: its config, the step, the newest eval at or before it (door.py); keyword-only
    trained: dict | None = dataclasses.field(default=None, kw_only=True)
    kind: ClassVar[str] = RERANKER


Bundle = Union[LoadedEmbedder, LoadedColBERT, LoadedReranker]
