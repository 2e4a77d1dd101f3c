"""Reading, validating, tokenizing and batching text data."""
