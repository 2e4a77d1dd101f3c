"""Chunked exact search against brute force, over chunk sizes that do and do not divide the inputs."""

import numpy as np
import pytest

from jaxretrieval.eval.search import exact_search


@pytest.mark.parametrize("query_chunk,corpus_chunk,k", [(7, 13, 5), (64, 1000, 20), (3, 50, 200)])
def test_chunked_search_matches_brute_force(query_chunk, corpus_chunk, k):
    rng = np.random.default_rng(1)
    queries = rng.normal(size=(23, 16)).astype(np.float32)
    corpus = rng.normal(size=(151, 16)).astype(np.float32)
    scores, index = exact_search(queries, corpus, k, query_chunk=query_chunk, corpus_chunk=corpus_chunk)
    full = queries @ corpus.T
    expect = np.argsort(-full, axis=1, kind="stable")[:, : min(k, 151)]
    np.testing.assert_array_equal(index, expect)
    np.testing.assert_allclose(scores, np.take_along_axis(full, expect, 1), rtol=1e-5, atol=1e-5)


def test_mismatched_widths_are_refused():
    with pytest.raises(ValueError, match="shape mismatch"):
        exact_search(np.zeros((2, 3), np.float32), np.zeros((4, 5), np.float32), 2)
