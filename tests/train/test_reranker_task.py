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
