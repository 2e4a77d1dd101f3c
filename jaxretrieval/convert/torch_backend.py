"""Dense-embedder inference through PyTorch on CPU: the model exported to a sentence-transformers directory (a
temporary one) and run by sentence-transformers, behind the same encode / eval / mine / score commands.

Why it exists: on CPUs with AVX512-BF16 or AMX, oneDNN's bfloat16 kernels that torch uses are several times
faster than anything XLA's CPU backend offers today. XLA runs bfloat16 products no faster than float32 ones, and
its CPU library fusions (YNNPACK, XNNPACK, oneDNN), which do speed up a lone bfloat16 matrix product, slow the whole
encoder down (docs/results.md has the measurements). Training stays on JAX; this only serves vectors. The export
is the one `jaxretrieval export` writes, so the vectors are the ones a serving stack would compute.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Sequence

import numpy as np

from jaxretrieval.bundles import LoadedEmbedder
from jaxretrieval.convert.export import export
from jaxretrieval.errors import InputError


class TorchEmbedder:
    """encode(texts, kind, batch_size) → float32[len(texts), dim] with sentence-transformers on CPU, in
    `compute_dtype` (float32 | bfloat16)."""

    def __init__(self, loaded: LoadedEmbedder, compute_dtype: str = "float32"):
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise InputError(f"--backend torch needs torch and sentence-transformers installed ({e})",
                             field="--backend") from None
        if loaded.model.spec.matryoshka_dims:
            raise InputError("--backend torch serves the main output only; this model has Matryoshka dims "
                             "(use the jax backend for --all-dims)", field="--backend")
        self.dir = Path(tempfile.mkdtemp(prefix="jaxretrieval-torch-"))
        weakref.finalize(self, shutil.rmtree, self.dir, True)
        export(loaded, self.dir / "model", "sentence-transformers", "float32")
        kwargs = {"model_kwargs": {"torch_dtype": torch.bfloat16}} if compute_dtype == "bfloat16" else {}
        self.model = SentenceTransformer(str(self.dir / "model"), device="cpu", **kwargs)
        spec = loaded.model.spec
        self.prompts = {"query": spec.query_prompt or None, "doc": spec.doc_prompt or None}
        self.compute_dtype = compute_dtype

    def encode(self, texts: Sequence[str], kind: str = "doc", batch_size: int = 32, progress: bool = False
               ) -> np.ndarray:
        vectors = self.model.encode(list(texts), batch_size=batch_size, prompt=self.prompts[kind],
                                    show_progress_bar=progress, convert_to_numpy=True)
        return np.asarray(vectors, np.float32)
