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
