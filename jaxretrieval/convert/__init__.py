"""File formats of model directories, in and out: Hugging Face, sentence-transformers, PyLate, cross-encoder; and
export of a bundle to one of them."""
