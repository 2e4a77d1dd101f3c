"""The ColBERT task: queries and documents as token-vector streams (expansion attended or not, skiplist out of the
document vectors), and MaxSim losses from their representations."""

import jax.numpy as jnp
import numpy as np
import pytest

from hf_tiny import tiny_colbert_dir, tiny_pairs_jsonl
from jaxretrieval.config import load_config
from jaxretrieval.losses.contrastive import infonce_from_scores
from jaxretrieval.losses.maxsim import maxsim_scores
from jaxretrieval.train.colbert_task import ColBERTTask
from jaxretrieval.train.model_setup import build_model


def test_streams_and_contrastive_loss(tmp_path):
    model, data = tiny_colbert_dir(tmp_path / "m"), tiny_pairs_jsonl(tmp_path / "d.jsonl")
    cfg = load_config(None, [f"output_dir={tmp_path}", "task=colbert", f"model.path={model}", f"data.train={data}",
                             "batch_size=4",
                             "data.num_negatives=1", "colbert.dim=8", "colbert.query_length=8",
                             "colbert.doc_length=16"])
    task = ColBERTTask.build(cfg, build_model(cfg))
    batch = {k: jnp.asarray(v) for k, v in task.source.batch(0).items()}
    streams = task.streams(batch)
    assert streams["query"]["ids"].shape == (4, 8) and streams["doc"]["ids"].shape[0] == 8
    assert bool(streams["query"]["vectors"].all()) and not bool(streams["query"]["attention"].all())
    punct = jnp.isin(streams["doc"]["ids"], jnp.asarray(task.skiplist))
    assert not bool((streams["doc"]["vectors"] * punct).any())  # skiplisted tokens give no vectors
    rng = np.random.default_rng(0)
    q = jnp.asarray(rng.normal(size=(4, 8, 8)), jnp.float32)
    d = jnp.asarray(rng.normal(size=(8, streams["doc"]["ids"].shape[1], 8)), jnp.float32)
    got, _ = task.loss_from_reps({"query": q, "doc": d}, batch)
    scores = maxsim_scores(q, streams["query"]["vectors"], d, streams["doc"]["vectors"], "sum", 64)
    ids = jnp.concatenate([batch["pos_doc"], batch["neg_doc"].reshape(-1)])
    assert float(got) == pytest.approx(float(infonce_from_scores(scores, ids, cfg.loss.temperature)), rel=1e-6)
