"""Retrieval evaluation: exact search and IR metrics."""
