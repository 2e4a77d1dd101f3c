"""The distillation task: one stream of texts, {dim: vectors} representations, the Stella losses on the main output
and every Matryoshka head, on unit vectors whatever the student's outputs."""

import numpy as np
import pytest

from hf_tiny import distill_config, tiny_bert, tiny_distill_data
from jaxretrieval.convert.st_format import load_embedder
from jaxretrieval.train.distill_task import DistillTask


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    return (root, *tiny_distill_data(root))


_cfg = distill_config


def test_a_student_without_normalize_is_distilled_on_unit_vectors(setup, tmp_path):
    """The losses compare cosines (and the 0.015 margin is a cosine margin): a student whose outputs are not unit
    vectors (no Normalize module, no head) must be normalized in the loss, so scaling its outputs changes nothing."""
    _, _, _, texts, vectors = setup
    student = tiny_bert(tmp_path / "bare", seed=3)  # a plain Hugging Face model: mean pooling only
    loaded = load_embedder(student)
    cfg = _cfg(tmp_path, student, texts, f"distill.teacher_vectors={vectors}", "distill.cosine_weight=0")
    task = DistillTask.build(cfg, loaded)
    batch = task.source.batch(0)
    out = np.asarray(loaded.model(batch["ids"], batch["mask"]))  # float32[8, D]
    assert not task.normalized and not np.allclose(np.linalg.norm(out, axis=1), 1.0)
    losses = [float(task.loss_from_reps({"text": {task.main_dim: scale * out}}, batch)[0]) for scale in (1.0, 3.0)]
    unit = out / np.linalg.norm(out, axis=1, keepdims=True)
    task.normalized = True  # as a Normalize module would hand them over
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    assert losses[0] == pytest.approx(float(task.loss_from_reps({"text": {task.main_dim: unit}}, batch)[0]), rel=1e-5)


@pytest.mark.parametrize("teacher", ["vectors", "online"])
def test_packed_student_texts_give_the_padded_loss_and_gradients(setup, tmp_path, teacher):
    """data.packing packs the student's texts (online teachers' tokens stay padded): the same loss and gradients as
    the padded batch of the same step."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from jaxretrieval.train.tasks import task_loss

    _, student, teacher_dir, texts, vectors = setup
    source = f"distill.teacher_vectors={vectors}" if teacher == "vectors" else f"distill.teachers=[{teacher_dir}]"
    tasks, batches = [], []
    for packing in ("false", "true"):
        cfg = _cfg(tmp_path, student, texts, source, f"data.packing={packing}", "model.dropout=false")
        loaded = load_embedder(student)
        task = DistillTask.build(cfg, loaded)
        tasks.append(task)
        batches.append({k: jnp.asarray(v) for k, v in task.source.batch(2).items()})
    assert "segments" in batches[1] and "mask" not in batches[1]
    graphdef, state = nnx.split(loaded.model)

    def loss(state, task, batch):
        return task_loss(task, nnx.merge(graphdef, state), batch, task.teacher_params, None)[0]

    (l0, g0), (l1, g1) = (jax.value_and_grad(loss)(state, t, b) for t, b in zip(tasks, batches))
    assert float(l1) == pytest.approx(float(l0), abs=1e-5)
    excess = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max() - 1e-5 * jnp.abs(a).max() - 1e-8), g0, g1)
    assert max(jax.tree.leaves(excess)) <= 0
