"""Two-stage evaluation: pair scores equal the model's own logits whatever the batching, and reranking reorders each
query's first-stage candidates by them."""

import jax.numpy as jnp
import numpy as np

from hf_tiny import tiny_bert, tiny_embedder_dir, tiny_fox_beir
from jaxretrieval.convert.cross_encoder_format import load_reranker
from jaxretrieval.convert.st_format import load_embedder
from jaxretrieval.data.beir import load_beir
from jaxretrieval.eval.rerank import dense_first_stage, evaluate_reranker, rerank_run, score_pairs


def test_pair_scores_and_reranking(tmp_path):
    reranker = load_reranker(tiny_bert(tmp_path / "hf"), max_length=32, seed=1)
    queries, docs = ["quick fox", "dog", "hello"], ["the quick brown fox", "lazy dog over", "world"]
    scores = score_pairs(reranker, queries, docs, batch_size=2)
    enc = reranker.tokenizer.batch(queries, docs)
    direct = reranker.model(jnp.asarray(enc["ids"]), jnp.asarray(enc["mask"]), jnp.asarray(enc["types"]))
    np.testing.assert_allclose(scores, np.asarray(direct), atol=1e-5)
    data = load_beir(tiny_fox_beir(tmp_path / "b"))
    first = dense_first_stage(load_embedder(tiny_embedder_dir(tmp_path / "m")), data, top_k=4)
    assert all(len(v) == 4 for v in first.values())
    reranked = rerank_run(reranker, data, first, top_k=4)
    for qid, docs_ in reranked.items():
        text = dict(zip(data.doc_ids, data.doc_texts))
        s = score_pairs(reranker, [data.query_texts[data.query_ids.index(qid)]] * 4, [text[d] for d in docs_])
        assert list(s) == sorted(s, reverse=True)
    metrics = evaluate_reranker(reranker, data, first, top_k=4)
    assert {"ndcg@10", "first_stage/ndcg@10", "rerank_top"} <= set(metrics)
