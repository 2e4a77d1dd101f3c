"""Evaluation and what is built on search plus inference: retrieval metrics, STS, ColBERT and reranker evaluation,
hard-negative mining, teacher scores, and the one evaluation dispatch."""
