"""A tokenizer-free Tokenization and small pair records, for the shard tests (no model needed)."""

import json

from jaxretrieval.data.shard_writer import Tokenization


def char_tokens(texts, kind):
    """Token ids from characters, at most 6 for a query and 10 for a document."""
    limit = 6 if kind == "query" else 10
    return [[2 + ord(c) % 40 for c in t][:limit] for t in texts]


FAKE = Tokenization(char_tokens, "fake-tokenizer", {"max_query_length": 6, "max_doc_length": 10})


def pair_lines(rows, negatives=2, scored=False):
    """{query, pos, neg[, scores]} records; queries repeat every 7 rows and documents every 5."""
    out = []
    for i in range(rows):
        r = {"query": f"q{i % 7}", "pos": [f"doc {i % 5}", f"pos {i}"][: 1 + i % 2],
             "neg": [f"neg {i} {j}" for j in range(negatives)]}
        if scored:
            r["pos_scores"] = [1.0 + i] * len(r["pos"])
            r["neg_scores"] = [float(-j) for j in range(negatives)]
        out.append(json.dumps(r))
    return "\n".join(out) + "\n"
