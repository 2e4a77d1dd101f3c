"""Teacher scores for distillation: every (query, document) of {query, pos, neg} records scored by a reranker
(logits), a ColBERT model (MaxSim) or a dense model (dot product of its output vectors)."""

from __future__ import annotations

import numpy as np

from jaxretrieval.bundles import COLBERT, RERANKER, Bundle
from jaxretrieval.eval.colbert_search import encode_token_vectors
from jaxretrieval.eval.rerank import score_pairs
from jaxretrieval.inference import encode_texts
from jaxretrieval.losses.maxsim import maxsim_dense


def _as_list(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def score_records(loaded: Bundle, records: list[dict], batch_size: int = 32) -> list[dict]:
    """Each record with `pos_scores` and `neg_scores` added, one per positive and negative, in order."""
    queries = [r["query"] for r in records]
    groups = [_as_list(r["pos"]) + _as_list(r.get("neg")) for r in records]
    if loaded.kind == RERANKER:
        flat = score_pairs(loaded, [q for q, g in zip(queries, groups) for _ in g], [d for g in groups for d in g],
                           batch_size, progress=True)
    elif loaded.kind == COLBERT:
        texts = list(dict.fromkeys(d for g in groups for d in g))
        where = {t: i for i, t in enumerate(texts)}
        d_flat, d_off = encode_token_vectors(loaded, texts, "doc", batch_size, progress=True)
        q_flat, q_off = encode_token_vectors(loaded, queries, "query", batch_size, progress=True)
        flat = []
        for qi, g in enumerate(groups):
            q = q_flat[q_off[qi]:q_off[qi + 1]].astype(np.float32)[None]
            for d in g:
                v = d_flat[d_off[where[d]]:d_off[where[d] + 1]].astype(np.float32)[None]
                flat.append(float(maxsim_dense(q, np.ones(q.shape[:2]), v, np.ones(v.shape[:2]),
                                               loaded.model.spec.reduce)[0, 0]))
        flat = np.array(flat, np.float32)
    else:
        texts = list(dict.fromkeys(d for g in groups for d in g))
        where = {t: i for i, t in enumerate(texts)}
        docs = encode_texts(loaded, texts, "doc", batch_size, progress=True)
        qv = encode_texts(loaded, queries, "query", batch_size, progress=True)
        flat = np.array([float(qv[i] @ docs[where[d]]) for i, g in enumerate(groups) for d in g], np.float32)
    out, k = [], 0
    for r in records:
        n_pos, n_neg = len(_as_list(r["pos"])), len(_as_list(r.get("neg")))
        scores = flat[k:k + n_pos + n_neg].tolist()
        out.append({**r, "pos_scores": scores[:n_pos], "neg_scores": scores[n_pos:]})
        k += n_pos + n_neg
    return out
