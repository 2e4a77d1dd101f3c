"""Reading, validating, tokenizing and batching data: every reader, tokenizer and batch source of the package."""
