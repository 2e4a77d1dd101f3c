"""Encoders (one module per Hugging Face family), heads and the Embedder task."""
