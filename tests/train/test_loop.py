"""The train loop: sharding-invariance, exact resume, logs, and input errors raised before any step."""

import json

import jax
import numpy as np
import pytest

from hf_tiny import tiny_embedder_dir, tiny_pairs_jsonl
from jaxretrieval.config import load_config
from jaxretrieval.errors import InputError
from jaxretrieval.training import run_training as train


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    return tiny_embedder_dir(root / "model"), tiny_pairs_jsonl(root / "data.jsonl", rows=32, negatives=3)


def _cfg(out, model, data, *extra):
    return load_config(None, [f"output_dir={out}", f"model.path={model}", f"data.train={data}", "batch_size=8",
                              "data.num_negatives=1", "learning_rate=1e-3", "save_every=3", "log_every=1",
                              "optimizer.warmup_steps=2", *extra])


def _metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _final_params(out):
    """Parameters of the newest checkpoint, as a flat {path: array} dict."""
    import orbax.checkpoint as ocp

    mgr = ocp.CheckpointManager(out / "checkpoints")
    restored = mgr.restore(mgr.latest_step())
    flat = jax.tree_util.tree_flatten_with_path(restored["state"]["params"])[0]
    mgr.close()
    return {jax.tree_util.keystr(k): np.asarray(v) for k, v in flat}


def test_one_device_and_eight_devices_agree(tmp_path, setup):
    assert jax.device_count() == 8, "conftest sets 8 simulated CPU devices"
    model, data = setup
    train(_cfg(tmp_path / "one", model, data, "steps=3", "mesh.data=1"))
    train(_cfg(tmp_path / "eight", model, data, "steps=3"))
    one, eight = _metrics(tmp_path / "one"), _metrics(tmp_path / "eight")
    assert [m["step"] for m in one] == [1, 2, 3]
    np.testing.assert_allclose([m["loss"] for m in one], [m["loss"] for m in eight], atol=1e-5)
    p1, p8 = _final_params(tmp_path / "one"), _final_params(tmp_path / "eight")
    assert p1.keys() == p8.keys()
    for k in p1:
        np.testing.assert_allclose(p1[k], p8[k], atol=1e-5, err_msg=k)


def test_resume_is_exact(tmp_path, setup):
    model, data = setup
    straight = tmp_path / "straight"
    train(_cfg(straight, model, data, "steps=6"))
    resumed = tmp_path / "resumed"
    first = train(_cfg(resumed, model, data, "steps=6"), stop_at_step=3)
    assert first["step"] == 3
    second = train(_cfg(resumed, model, data, "steps=6"))
    assert second["step"] == 6
    a, b = _metrics(straight), _metrics(resumed)
    assert [m for m in a if m["step"] > 3] == [m for m in b if m["step"] > 3]  # bitwise: exact float equality
    pa, pb = _final_params(straight), _final_params(resumed)
    for k in pa:
        np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)
    for name in ("config.yaml", "metrics.png"):
        assert (resumed / name).exists()
    assert list((resumed / "tensorboard").iterdir())


def _nothing_written(out):
    return not (out / "checkpoints").exists() and not (out / "metrics.jsonl").exists()


def test_malformed_line_fails_before_any_step(tmp_path, setup):
    model, data = setup
    bad = tmp_path / "bad.jsonl"
    bad.write_text(data.read_text() + '{"query": "x", "pos": ["y"\n')
    with pytest.raises(InputError, match=r"bad\.jsonl:33: not valid JSON"):
        train(_cfg(tmp_path / "out", model, bad, "steps=1"))
    assert _nothing_written(tmp_path / "out")


def test_empty_pos_fails_before_any_step(tmp_path, setup):
    model, data = setup
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "x", "pos": []}\n' + data.read_text())
    with pytest.raises(InputError, match=r"bad\.jsonl:1 \[pos\]"):
        train(_cfg(tmp_path / "out", model, bad, "steps=1"))
    assert _nothing_written(tmp_path / "out")


def test_batch_not_divisible_by_data_parallel_size(tmp_path, setup):
    model, data = setup
    with pytest.raises(InputError, match=r"\[batch_size\].*not divisible by the data-parallel size 8"):
        train(_cfg(tmp_path / "out", model, data, "steps=1", "batch_size=12"))
    assert _nothing_written(tmp_path / "out")


def test_cli_train_reports_unknown_key(tmp_path, capsys, setup):
    from jaxretrieval.cli import main

    model, data = setup
    assert main(["train", "configs/quickstart.yaml", f"output_dir={tmp_path}", "stepz=3"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'stepz'" in err and "steps" in err


def test_bfloat16_compute_keeps_float32_master_weights(tmp_path, setup):
    model, data = setup
    summary = train(_cfg(tmp_path / "bf16", model, data, "steps=2", "model.compute_dtype=bfloat16"))
    assert np.isfinite(summary["loss"])
    params = _final_params(tmp_path / "bf16")
    assert all(v.dtype == np.float32 for v in params.values())


def test_grad_cache_matches_the_plain_step(tmp_path, setup):
    """GradCache (chunks of 2 rows) vs the plain step on 8 devices, dropout off: same losses and parameters."""
    model, data = setup
    plain, cached = tmp_path / "plain", tmp_path / "cached"
    train(_cfg(plain, model, data, "steps=2", "model.dropout=false"))
    train(_cfg(cached, model, data, "steps=2", "model.dropout=false", "grad_cache_chunk=2"))
    a, b = _metrics(plain), _metrics(cached)
    np.testing.assert_allclose([m["loss"] for m in a], [m["loss"] for m in b], atol=1e-5)
    np.testing.assert_allclose([m["grad_norm"] for m in a], [m["grad_norm"] for m in b], rtol=1e-4)
    pa, pb = _final_params(plain), _final_params(cached)
    for k in pa:
        np.testing.assert_allclose(pa[k], pb[k], atol=1e-5, err_msg=k)


@pytest.mark.parametrize("mesh", [("mesh.data=1", "mesh.fsdp=8"), ("mesh.data=2", "mesh.fsdp=4")],
                         ids=["fsdp8", "data2xfsdp4"])
def test_fsdp_meshes_match_data_parallel_and_shard_parameters(tmp_path, setup, mesh):
    from jaxretrieval.config import load_config as load
    from jaxretrieval.train.loop import init_train_state
    from jaxretrieval.train.loop import setup as train_setup

    model, data = setup
    train(_cfg(tmp_path / "dp", model, data, "steps=3"))
    train(_cfg(tmp_path / "fsdp", model, data, "steps=3", *mesh))
    np.testing.assert_allclose([m["loss"] for m in _metrics(tmp_path / "dp")],
                               [m["loss"] for m in _metrics(tmp_path / "fsdp")], atol=1e-5)
    run = train_setup(load(None, [f"output_dir={tmp_path / 'x'}", f"model.path={model}", f"data.train={data}",
                               "batch_size=8", *mesh]))
    state = init_train_state(run).state
    kernel = state["params"]["encoder"]["layers"][0]["query"]["kernel"]
    fsdp = int(mesh[1].split("=")[1])
    assert kernel.sharding.spec[0] == "fsdp" and len(kernel.addressable_shards) == 8
    assert kernel.addressable_shards[0].data.shape[0] == kernel.shape[0] // fsdp  # really split, not replicated
    adam_mu = jax.tree.leaves(state["opt_state"])
    assert any(getattr(x, "sharding", None) is not None and x.ndim == 2 and x.sharding.spec[0] == "fsdp"
               for x in adam_mu)  # optimizer moments follow the parameter sharding


def test_time_based_checkpoints(tmp_path, setup):
    from jaxretrieval.train.checkpoint import checkpoint_steps

    model, data = setup
    train(_cfg(tmp_path / "timed", model, data, "steps=4", "save_every=0", "save_every_minutes=1e-6",
               "keep_checkpoints=10"))
    assert checkpoint_steps(tmp_path / "timed") == [1, 2, 3, 4]  # every step is past its minute budget
    train(_cfg(tmp_path / "final", model, data, "steps=4", "save_every=0", "keep_checkpoints=10"))
    assert checkpoint_steps(tmp_path / "final") == [4]


def test_several_processes_need_an_output_dir_they_all_see(tmp_path, monkeypatch, gcs):
    from jaxretrieval.train import loop

    cfg = load_config(None, [f"output_dir={tmp_path / 'run'}", "model.path=m", "data.train=d.jsonl"])
    loop.check_output_dir(cfg)  # one process: any path
    monkeypatch.setattr(loop.jax, "process_count", lambda: 2)
    with pytest.raises(InputError, match=r"run \[output_dir\]: 2 processes cannot share a local output_dir"):
        loop.check_output_dir(cfg)
    cfg.shared_filesystem = True  # NFS, or every process on this machine
    loop.check_output_dir(cfg)
    cfg.shared_filesystem, cfg.output_dir = False, "gs://no-such-bucket-jaxretrieval/run"
    with pytest.raises(InputError, match=r"\[output_dir\]: bucket 'no-such-bucket-jaxretrieval' does not exist"):
        loop.check_output_dir(cfg)
