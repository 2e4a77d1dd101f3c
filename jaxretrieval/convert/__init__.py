"""Moving weights between Hugging Face / sentence-transformers directories and jaxretrieval models."""
