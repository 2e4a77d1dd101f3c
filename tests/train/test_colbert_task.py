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


def test_margin_mse_fits_each_querys_maxsim_margins(tmp_path):
    import json

    model, data = tiny_colbert_dir(tmp_path / "m"), tiny_pairs_jsonl(tmp_path / "d.jsonl")
    rows = [json.loads(x) for x in data.read_text().splitlines()]
    data.write_text("".join(json.dumps({**r, "pos_scores": [3.0], "neg_scores": [float(-i) for i in
                                                                                range(len(r["neg"]))]}) + "\n"
                            for r in rows))
    cfg = load_config(None, [f"output_dir={tmp_path}", "task=colbert", f"model.path={model}", f"data.train={data}",
                             "batch_size=4", "data.num_negatives=2", "colbert.dim=8", "colbert.query_length=8",
                             "colbert.doc_length=16", "colbert.loss=margin_mse"])
    task = ColBERTTask.build(cfg, build_model(cfg))
    batch = {k: jnp.asarray(v) for k, v in task.source.batch(0).items()}
    streams = task.streams(batch)
    rng = np.random.default_rng(1)
    q = rng.normal(size=(4, 8, 8)).astype(np.float32)
    d = rng.normal(size=(12, streams["doc"]["ids"].shape[1], 8)).astype(np.float32)
    got, _ = task.loss_from_reps({"query": jnp.asarray(q), "doc": jnp.asarray(d)}, batch)
    qm, dm = np.asarray(streams["query"]["vectors"]), np.asarray(streams["doc"]["vectors"])

    def maxsim(i, j):  # sum over the query's vectors of the best document vector
        sims = q[i] @ d[j].T
        return float((np.where(dm[j][None, :] > 0, sims, -np.inf).max(1) * qm[i]).sum())

    teacher = np.concatenate([np.asarray(batch["pos_score"])[:, None], np.asarray(batch["neg_scores"])], 1)
    student = np.array([[maxsim(i, i)] + [maxsim(i, 4 + 2 * i + k) for k in range(2)] for i in range(4)])
    expect = np.mean((student[:, :1] - student[:, 1:] - (teacher[:, :1] - teacher[:, 1:])) ** 2)
    assert float(got) == pytest.approx(expect, rel=1e-5)


def test_bfloat16_compute_reaches_the_colbert_encoder(tmp_path):
    """model.compute_dtype is honoured by ColBERT (it was silently float32): bf16 vectors are close to float32
    ones, and the parameters stay float32."""
    import jax

    model, data = tiny_colbert_dir(tmp_path / "m"), tiny_pairs_jsonl(tmp_path / "d.jsonl")
    out = {}
    for dtype in ("float32", "bfloat16"):
        cfg = load_config(None, [f"output_dir={tmp_path}", "task=colbert", f"model.path={model}",
                                 f"data.train={data}", "batch_size=4", "colbert.dim=8", "colbert.query_length=8",
                                 "colbert.doc_length=16", f"model.compute_dtype={dtype}", "model.dropout=false"])
        loaded = build_model(cfg)
        task = ColBERTTask.build(cfg, loaded)
        batch = {k: jnp.asarray(v) for k, v in task.source.batch(0).items()}
        inputs = task.streams(batch)["doc"]
        out[dtype] = np.asarray(task.encode(loaded.model, "doc", inputs, None))
        from flax import nnx
        leaves = jax.tree.leaves(nnx.state(loaded.model, nnx.Param))
        assert all(x.dtype == jnp.float32 for x in leaves)
    assert not np.array_equal(out["float32"], out["bfloat16"])
    np.testing.assert_allclose(out["bfloat16"], out["float32"], atol=5e-2)


@pytest.mark.parametrize("processes", [1, 2])
def test_packed_documents_give_the_padded_loss_and_gradients(tmp_path, processes):
    """data.packing packs ColBERT's documents (queries stay at their fixed expanded length) and reads each document's
    token vectors back: the same loss and gradients as the padded batch."""
    import dataclasses

    import jax
    from flax import nnx

    from jaxretrieval.train.tasks import task_loss

    model, data = tiny_colbert_dir(tmp_path / "m"), tiny_pairs_jsonl(tmp_path / "d.jsonl")
    base = [f"output_dir={tmp_path}", "task=colbert", f"model.path={model}", f"data.train={data}", "batch_size=4",
            "data.num_negatives=2", "model.dropout=false"]
    tasks, batches = [], []
    for packing in ("false", "true"):
        cfg = load_config(None, base + [f"data.packing={packing}"])
        loaded = build_model(cfg)
        task = ColBERTTask.build(cfg, loaded)
        shares = [dataclasses.replace(task.source, process_index=i, process_count=processes, row_multiple=1
                                      ).batch(1) for i in range(processes)]
        batch = {k: np.concatenate([s[k] for s in shares]) for k in shares[0]}
        if packing == "true":
            assert batch["doc_ids"].shape[0] < 12 and "doc_tokens" in batch and "query_mask" in batch
        tasks.append(task)
        batches.append({k: jnp.asarray(v) for k, v in batch.items()})
    graphdef, state = nnx.split(loaded.model)

    def loss(state, task, batch):
        return task_loss(task, nnx.merge(graphdef, state), batch, {}, None)[0]

    (l0, g0), (l1, g1) = (jax.value_and_grad(loss)(state, t, b) for t, b in zip(tasks, batches))
    assert float(l1) == pytest.approx(float(l0), abs=1e-5)
    excess = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max() - 1e-5 * jnp.abs(a).max() - 1e-8), g0, g1)
    assert max(jax.tree.leaves(excess)) <= 0
