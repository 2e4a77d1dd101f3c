"""The dense task: queries and documents as two streams; InfoNCE over the global batch, or per-query KL to the
file's teacher scores, computed from the streams' representations."""

import jax.numpy as jnp
import numpy as np
import pytest

from hf_tiny import tiny_embedder_dir, tiny_pairs_jsonl
from jaxretrieval.config import load_config
from jaxretrieval.losses.contrastive import infonce_loss
from jaxretrieval.losses.listwise import listwise_kl_loss
from jaxretrieval.train.dense_task import DenseTask
from jaxretrieval.train.model_setup import build_model

B, N, D = 4, 2, 6


def _batch():
    rng = np.random.default_rng(0)
    return {"query_ids": jnp.ones((B, 5), jnp.int32), "query_mask": jnp.ones((B, 5), jnp.int32),
            "pos_ids": jnp.ones((B, 7), jnp.int32), "pos_mask": jnp.ones((B, 7), jnp.int32),
            "neg_ids": jnp.ones((B, N, 7), jnp.int32), "neg_mask": jnp.ones((B, N, 7), jnp.int32),
            "query_text": jnp.arange(B, dtype=jnp.int32), "pos_doc": jnp.arange(B, dtype=jnp.int32),
            "neg_doc": jnp.arange(B, B + B * N, dtype=jnp.int32).reshape(B, N),
            "pos_score": jnp.asarray(rng.normal(size=B), jnp.float32),
            "neg_scores": jnp.asarray(rng.normal(size=(B, N)), jnp.float32)}


def _task(tmp_path, *extra):
    cfg = load_config(None, [f"output_dir={tmp_path}", f"model.path={tiny_embedder_dir(tmp_path / 'm')}",
                             f"data.train={tiny_pairs_jsonl(tmp_path / 'd.jsonl')}", "batch_size=4", *extra])
    return DenseTask.build(cfg, build_model(cfg)), cfg


@pytest.mark.parametrize("loss", ["infonce", "kl", "margin_mse"])
def test_loss_from_reps(tmp_path, loss):
    extra = [f"loss.name={loss}", "data.num_negatives=2"]
    if loss != "infonce":
        scored = tiny_pairs_jsonl(tmp_path / "s.jsonl")
        import json
        rows = [json.loads(x) for x in scored.read_text().splitlines()]
        scored.write_text("".join(json.dumps({**r, "pos_scores": [1.0], "neg_scores": [0.0] * len(r["neg"])}) + "\n"
                                  for r in rows))
        extra.append(f"data.train={scored}")
    task, cfg = _task(tmp_path, *extra)
    batch = _batch()
    streams = task.streams(batch)
    assert streams["query"]["ids"].shape == (B, 5) and streams["doc"]["ids"].shape == (B * (1 + N), 7)
    rng = np.random.default_rng(1)
    q = jnp.asarray(rng.normal(size=(B, D)), jnp.float32)
    d = jnp.asarray(rng.normal(size=(B * (1 + N), D)), jnp.float32)
    got, _ = task.loss_from_reps({"query": q, "doc": d}, batch)
    if loss == "infonce":
        ids = jnp.concatenate([batch["pos_doc"], batch["neg_doc"].reshape(-1)])
        expect = infonce_loss(q, d, ids, cfg.loss.temperature, cfg.loss.symmetric, batch["query_text"])
    else:
        group = np.concatenate([np.asarray(d[:B, None]), np.asarray(d[B:]).reshape(B, N, D)], axis=1)
        student = np.einsum("bd,bgd->bg", np.asarray(q), group)
        teacher = np.concatenate([batch["pos_score"][:, None], batch["neg_scores"]], 1)
        if loss == "kl":
            expect = listwise_kl_loss(student / cfg.loss.temperature, teacher)
        else:  # margins of the positive over each negative, student against teacher
            expect = np.mean((student[:, :1] - student[:, 1:] - (teacher[:, :1] - teacher[:, 1:])) ** 2)
    assert float(got) == pytest.approx(float(expect), rel=1e-6)


def test_matryoshka_dims_add_a_weighted_loss_each(tmp_path):
    task, cfg = _task(tmp_path, "data.num_negatives=2", "model.matryoshka_dims=[4,2]", "model.matryoshka_mode=slice",
                      "model.matryoshka_weights=[0.5,0.25]")
    batch = _batch()
    model = build_model(cfg).model
    reps = {name: task.encode(model, name, inputs, None) for name, inputs in task.streams(batch).items()}
    assert set(reps["query"]) == {task.main_dim, 4, 2} and reps["doc"][2].shape == (B * (1 + N), 2)
    got, metrics = task.loss_from_reps(reps, batch)
    ids = jnp.concatenate([batch["pos_doc"], batch["neg_doc"].reshape(-1)])
    each = {dim: float(infonce_loss(reps["query"][dim], reps["doc"][dim], ids, cfg.loss.temperature, False,
                                    batch["query_text"])) for dim in reps["query"]}
    assert float(got) == pytest.approx(each[task.main_dim] + 0.5 * each[4] + 0.25 * each[2], rel=1e-5)
    assert float(metrics["d4/loss"]) == pytest.approx(each[4], rel=1e-6)
    # a slice is the prefix of the main output, normalized again
    main = np.asarray(reps["query"][task.main_dim])[:, :4]
    np.testing.assert_allclose(reps["query"][4], main / np.linalg.norm(main, axis=1, keepdims=True), atol=1e-6)


def test_matryoshka_settings_other_tasks_would_ignore_are_errors(tmp_path):
    from jaxretrieval.errors import InputError

    base = [f"output_dir={tmp_path}", "model.path=m", "data.train=d.jsonl"]
    with pytest.raises(InputError, match=r"\[model.matryoshka_dims\]: model.matryoshka_dims is for tasks dense and"):
        load_config(None, [*base, "task=colbert", "model.matryoshka_dims=[4]"])
    with pytest.raises(InputError, match=r"\[model.matryoshka_weights\]: .* needs one weight per"):
        load_config(None, [*base, "model.matryoshka_dims=[4]", "model.matryoshka_weights=[1,2]"])


@pytest.mark.parametrize("processes", [1, 2])
def test_packed_batches_train_on_the_same_loss_and_gradients(tmp_path, processes):
    """data.packing changes the layout, not the step: a packed step's loss and gradients are the padded step's
    (no dropout, so both see the same function), and two processes' shares, stacked, are one global batch."""
    import dataclasses

    import jax
    from flax import nnx

    from jaxretrieval.train.tasks import task_loss

    task, cfg = _task(tmp_path, "data.num_negatives=2", "batch_size=8")
    packed_task, _ = _task(tmp_path, "data.num_negatives=2", "batch_size=8", "data.packing=true")
    model = build_model(cfg).model
    padded = {k: jnp.asarray(v) for k, v in task.source.batch(1).items()}
    shares = [dataclasses.replace(packed_task.source, process_index=i, process_count=processes, row_multiple=1
                                  ).batch(1) for i in range(processes)]
    packed = {k: jnp.asarray(np.concatenate([s[k] for s in shares])) for k in shares[0]}
    rows, length = packed["query_ids"].shape
    assert length == task.source.queries.buckets[-1] and rows < 8  # short queries share rows
    assert packed_task.source.row_multiple == jax.local_device_count()  # rows split evenly over the devices
    real_q = int((np.asarray(packed["query_segments"]) > 0).sum())
    assert real_q == int(np.asarray(padded["query_mask"]).sum())
    graphdef, state = nnx.split(model)

    def loss(state, t, batch):
        return task_loss(t, nnx.merge(graphdef, state), batch, None, None)[0]

    (l_padded, g_padded), (l_packed, g_packed) = (jax.value_and_grad(loss)(state, t, b) for t, b in
                                                  [(task, padded), (packed_task, packed)])
    assert float(l_packed) == pytest.approx(float(l_padded), abs=1e-5)
    excess = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max() - 1e-5 * jnp.abs(a).max() - 1e-8), g_padded,
                          g_packed)
    assert max(jax.tree.leaves(excess)) <= 0


def test_packing_settings_it_cannot_serve_are_errors(tmp_path):
    from jaxretrieval.errors import InputError

    for extra in (["grad_cache_chunk=2"],):
        with pytest.raises(InputError, match="data.packing"):
            _task(tmp_path, "data.packing=true", *extra)
