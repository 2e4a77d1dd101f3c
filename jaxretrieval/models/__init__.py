"""Encoders (one module per Hugging Face family), the embedder, ColBERT and cross-encoder models, LoRA adapters, and
flat parameter names."""
