"""The reranker task: each query's group flattened into one stream of pairs, scored, reshaped back to [B, G] for the
ranking losses."""

import jax.numpy as jnp
import numpy as np
import pytest

from hf_tiny import tiny_embedder_dir, tiny_pairs_jsonl
from jaxretrieval.config import load_config
from jaxretrieval.losses.ranking import listwise_ce_loss
from jaxretrieval.train.model_setup import build_model
from jaxretrieval.train.reranker_task import RerankerTask
from jaxretrieval.train.tasks import task_loss


def test_one_stream_of_pairs_and_the_listwise_loss(tmp_path):
    model, data = tiny_embedder_dir(tmp_path / "m"), tiny_pairs_jsonl(tmp_path / "d.jsonl")
    cfg = load_config(None, [f"output_dir={tmp_path}", "task=reranker", f"model.path={model}", f"data.train={data}",
                             "batch_size=4",
                             "reranker.group_size=3", "reranker.max_length=32"])
    loaded = build_model(cfg)
    task = RerankerTask.build(cfg, loaded)
    batch = {k: jnp.asarray(v) for k, v in task.source.batch(0).items()}
    b, g, length = batch["ids"].shape
    streams = task.streams(batch)
    assert streams["pairs"]["ids"].shape == (b * g, length)
    loss, _ = task_loss(task, loaded.model, batch, {}, None)
    scores = loaded.model(batch["ids"].reshape(b * g, length), batch["mask"].reshape(b * g, length),
                          batch["types"].reshape(b * g, length)).reshape(b, g)
    assert float(loss) == pytest.approx(float(listwise_ce_loss(scores)), rel=1e-5)
    flat = jnp.asarray(np.arange(b * g, dtype=np.float32))
    assert float(task.loss_from_reps({"pairs": flat}, batch)[0]) == pytest.approx(
        float(listwise_ce_loss(flat.reshape(b, g))), rel=1e-6)


@pytest.mark.parametrize("family,processes", [("bert", 1), ("bert", 2), ("qwen2", 1)])
def test_packed_pairs_give_the_padded_loss_and_gradients(tmp_path, family, processes):
    """data.packing packs the (query, document) pairs several to a row, token types included: the same loss and
    gradients as the padded batch, for a first-token head (BERT pooler) and a last-token one (Qwen2 score)."""
    import dataclasses

    import jax
    from flax import nnx

    from hf_tiny import tiny_family

    model = tiny_embedder_dir(tmp_path / "m") if family == "bert" else tiny_family(tmp_path / "q", "qwen2")
    data = tiny_pairs_jsonl(tmp_path / "d.jsonl")
    base = [f"output_dir={tmp_path}", "task=reranker", f"model.path={model}", f"data.train={data}", "batch_size=4",
            "reranker.group_size=3", "reranker.max_length=32", "model.dropout=false"]
    tasks, batches = [], []
    for packing in ("false", "true"):
        cfg = load_config(None, base + [f"data.packing={packing}"])
        loaded = build_model(cfg)
        task = RerankerTask.build(cfg, loaded)
        shares = [dataclasses.replace(task.source, process_index=i, process_count=processes, row_multiple=1
                                      ).batch(1) for i in range(processes)]
        if packing == "true":
            batch = {k: np.concatenate([s[k] for s in shares]) for k in shares[0]}
            assert batch["ids"].shape[0] < 12 and (batch["segments"].max(axis=1) > 1).any()  # pairs share rows
        else:
            batch = task.source.batch(1)
        tasks.append(task)
        batches.append({k: jnp.asarray(v) for k, v in batch.items()})
    graphdef, state = nnx.split(loaded.model)

    def loss(state, task, batch):
        return task_loss(task, nnx.merge(graphdef, state), batch, {}, None)[0]

    (l0, g0), (l1, g1) = (jax.value_and_grad(loss)(state, t, b) for t, b in zip(tasks, batches))
    assert float(l1) == pytest.approx(float(l0), abs=1e-5)
    excess = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max() - 1e-5 * jnp.abs(a).max() - 1e-8), g0, g1)
    assert max(jax.tree.leaves(excess)) <= 0
