"""jaxretrieval: train, distill and serve retrieval models (dense, ColBERT, rerankers) in JAX/Flax."""

__version__ = "0.1.0"
