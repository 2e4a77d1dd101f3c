"""Ahead-of-time compiles for TPU slices that are not here (libtpu): every shipped config's step compiles for a
small slice with a tiny model, Qwen2-1.5B fits a 16-chip slice with FSDP and not one chip, the batch a compile
assumes is the one the task's sources build, and the TPU step shards parameters as the CPU step does."""

import json
from pathlib import Path

import jax
import numpy as np
import pytest

pytest.importorskip("libtpu", reason="libtpu (the TPU compiler, a dev dependency) is not installed")

from hf_tiny import qwen2_1p5b_dir, tiny_colbert_dir, tiny_embedder_dir, tiny_family, tiny_pairs_jsonl  # noqa: E402
from jaxretrieval.cli import main  # noqa: E402
from jaxretrieval.config import load_config  # noqa: E402
from jaxretrieval.errors import InputError  # noqa: E402
from jaxretrieval.train.loop import init_train_state, setup  # noqa: E402
from jaxretrieval.train.tpu_compile import (  # noqa: E402
    GIB, batch_spec, compile_encode_step, compile_task, compile_train_step, hlo_collectives, require_fit, tpu_devices)
from jaxretrieval.train.model_setup import build_model  # noqa: E402

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("compile")
    qwen = tiny_family(root / "qwen", "qwen2", padding_side="left")
    return {"bert": tiny_embedder_dir(root / "bert"), "qwen": qwen, "colbert": tiny_colbert_dir(root / "colbert"),
            "root": root,
            "pairs": tiny_pairs_jsonl(root / "pairs.jsonl", rows=40, negatives=3)}


def _tiny_overrides(cfg_path, tiny) -> list[str]:
    """What makes a shipped config compile with a tiny model: its model, teacher vector files of the widths it
    expects, and small lengths (the lengths do not change what compiles)."""
    cfg = load_config(cfg_path, [f"output_dir={tiny['root']}/unused"])
    model = tiny["qwen"] if cfg.reranker.special_token else tiny["colbert"] if cfg.task == "colbert" else tiny["bert"]
    out = [f"model.path={model}", f"output_dir={tiny['root']}/unused", "data.train=x.jsonl"]
    if cfg.task == "distill":
        files = []
        for k, _ in enumerate(cfg.distill.teacher_vectors):
            f = tiny["root"] / f"{cfg_path.stem}_t{k}.npy"
            np.save(f, np.zeros((2, (cfg.model.head_dim or 24) // len(cfg.distill.teacher_vectors)), np.float32))
            files.append(str(f))
        out.append(f"distill.teacher_vectors=[{', '.join(files)}]")
    return out


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_every_shipped_config_compiles_for_a_small_slice(config, tiny):
    cfg = load_config(config, _tiny_overrides(config, tiny))
    report = compile_train_step(cfg, "v5e:2x2")
    assert report.devices == report.chips == 4 and report.fits
    assert report.flops > 0 and report.argument_bytes > 0
    assert report.total_bytes == (report.argument_bytes + report.output_bytes - report.alias_bytes
                                  + report.temp_bytes + report.code_bytes)
    assert "all-reduce" in report.collectives  # gradients are summed over the data axis
    assert report.loops == (0 < cfg.grad_cache_chunk < cfg.batch_size)


@pytest.mark.parametrize("task", ["dense", "colbert", "reranker"])
def test_the_encode_step_compiles_for_eval_batches(task, tiny):
    extra = {"dense": [], "colbert": ["colbert.dim=8", "colbert.doc_length=40"],
             "reranker": ["reranker.max_length=48", "reranker.group_size=3"]}[task]
    model = tiny["colbert"] if task == "colbert" else tiny["bert"]
    cfg = load_config(None, [f"output_dir={tiny['root']}/o", f"model.path={model}", "data.train=x.jsonl",
                             f"task={task}", "batch_size=8", "eval.batch_size=30", *extra])
    report = compile_encode_step(cfg, "v5e:2x2")
    assert report.batch_size == 32 and report.fits and report.flops > 0  # 30 rounded up to the 4 devices
    assert report.what == {"dense": "encode step (doc stream)", "colbert": "encode step (doc stream)",
                           "reranker": "encode step (pairs stream)"}[task]


@pytest.mark.parametrize("extra", [["grad_cache_chunk=4"], ["mesh.fsdp=2", "mesh.data=2"]])
def test_gradcache_and_fsdp_compile(tiny, extra):
    cfg = load_config(None, [f"output_dir={tiny['root']}/o", f"model.path={tiny['bert']}", "data.train=x.jsonl",
                             "batch_size=8", "data.num_negatives=1", *extra])
    report = compile_train_step(cfg, "v5e:2x2")
    assert report.fits and report.flops > 0
    assert report.loops == ("grad_cache_chunk=4" in extra)  # 2 chunks: the FLOPs are marked as a lower bound
    if "mesh.fsdp=2" in extra:
        assert report.mesh == {"data": 2, "fsdp": 2} and "all-gather" in report.collectives


def test_lora_on_a_decoder_compiles_with_fewer_trained_bytes(tiny):
    common = [f"output_dir={tiny['root']}/o", f"model.path={tiny['qwen']}", "data.train=x.jsonl", "batch_size=8"]
    full = compile_train_step(load_config(None, common), "v5e:2x2")
    lora = compile_train_step(load_config(None, [*common, "model.lora_rank=4", "optimizer.trainable=lora"]),
                              "v5e:2x2")
    assert lora.argument_bytes < full.argument_bytes  # no optimizer state for the frozen encoder


def test_a_qwen2_1p5b_shaped_step_fits_sixteen_v5e_chips_with_fsdp_and_gradcache(tmp_path, capsys):
    """2 of Qwen2-1.5B's 28 layers (the full model's compile takes minutes; its figures are in docs/results.md),
    batch 64 with one negative, 16-way FSDP and GradCache chunks of 32."""
    model = qwen2_1p5b_dir(tmp_path / "qwen2-1.5b", layers=2)
    config = tmp_path / "c.yaml"
    config.write_text("batch_size: 64\ngrad_cache_chunk: 32\n")
    common = [f"output_dir={tmp_path}/o", f"model.path={model}", "data.train=x.jsonl", "model.compute_dtype=bfloat16",
              "model.max_query_length=64", "model.max_doc_length=256", "data.num_negatives=1"]
    assert main(["compile", str(config), *common, "--topology", "v5e:4x4", "--mesh", "data=1,fsdp=16"]) == 0
    table = capsys.readouterr().out
    assert "16 chips (TPU v5 lite, 2D torus), 16 devices" in table and "data=1, fsdp=16" in table
    assert "train step" in table and "lower bound" in table  # GradCache: 2 chunks of 32
    assert "encode step (doc stream)" in table and "texts/s" in table
    params = int(next(line for line in table.splitlines() if line.startswith("parameters")).split()[-1]
                 .replace(",", ""))
    assert 3.2e8 < params < 3.3e8  # the embedding table (233M) and 2 layers of 47M
    used = next(line for line in table.splitlines() if line.startswith("total / device"))
    assert "of 16.000 GiB HBM" in used


def test_a_step_that_does_not_fit_is_one_line(tiny, tmp_path, capsys):
    """A batch whose similarity matrix alone (32768 x 65536 float32: 8 GiB a device) outgrows the chips."""
    config = tmp_path / "c.yaml"
    config.write_text("batch_size: 131072\n")
    argv = ["compile", str(config), f"output_dir={tmp_path}/o", f"model.path={tiny['bert']}", "data.train=x.jsonl",
            "data.num_negatives=0", "--topology", "v5e:2x2"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not fit" in err[0], err


def test_the_assumed_batch_is_what_the_sources_build(tiny):
    """Same keys, dtypes and ranks as a real batch of the task's source, at lengths no shorter."""
    from jaxretrieval.train.tasks import build_task

    cases = [["task=dense", "data.num_negatives=2"], ["task=dense", "data.num_negatives=2", "loss.name=margin_mse"],
             ["task=colbert", "data.num_negatives=1", "colbert.dim=8", "colbert.query_prefix=",
              "colbert.doc_prefix="],
             ["task=reranker", "reranker.group_size=3", "reranker.in_batch_negatives=1", "reranker.loss=listwise",
              "reranker.max_length=48"]]
    for extra in cases:
        data = tiny["pairs"]
        if "loss.name=margin_mse" in extra:
            data = tiny["root"] / "scored.jsonl"
            rows = [json.loads(x) for x in tiny["pairs"].read_text().splitlines()]
            data.write_text("".join(json.dumps({**r, "pos_scores": [1.0], "neg_scores": [0.5] * len(r["neg"])}) + "\n"
                                    for r in rows))
        cfg = load_config(None, [f"output_dir={tiny['root']}/o", f"model.path={tiny['bert']}", f"data.train={data}",
                                 "batch_size=8", *extra])
        loaded = build_model(cfg, initialize=False)
        real = build_task(cfg, loaded).source.batch(0)
        assumed = batch_spec(cfg, loaded, [])
        assert set(real) == set(assumed), extra
        for k, v in real.items():
            assert v.dtype == assumed[k].dtype and v.ndim == len(assumed[k].shape), (extra, k)
            assert all(a >= r for a, r in zip(assumed[k].shape, v.shape)), (extra, k)
        assert compile_task(cfg, loaded)[0].cfg is cfg


def test_tpu_and_cpu_steps_shard_parameters_alike(tiny):
    cfg = load_config(None, [f"output_dir={tiny['root']}/o", f"model.path={tiny['bert']}",
                             f"data.train={tiny['pairs']}", "batch_size=8", "mesh.data=2", "mesh.fsdp=2"])
    ts = init_train_state(setup(cfg))
    cpu = {jax.tree_util.keystr(k): (tuple(s.spec), tuple(v.shape)) for (k, s), v in zip(
        jax.tree_util.tree_flatten_with_path(ts.state_shardings["params"])[0],
        jax.tree.leaves(ts.state["params"]))}
    report = compile_train_step(cfg, "v5e:2x2")
    assert report.param_layout == cpu


def test_topology_errors_and_collective_parsing():
    with pytest.raises(InputError, match="VERSION:AxB"):
        tpu_devices("h100:8")
    chip, devices, chips = tpu_devices("v5p:2x2x1")
    assert chip.hbm_bytes == 95 * GIB and chips == 4 and len(devices) == 4
    hlo = ("  %ag = bf16[8,128]{1,0} all-gather(bf16[2,128]{1,0} %p), dimensions={0}\n"
           "  %ar = (f32[16]{0}, f32[4,4]{1,0}) all-reduce(f32[16]{0} %a, f32[4,4]{1,0} %b), to_apply=%sum\n"
           "  %rs-start = f32[4]{0} reduce-scatter-start(f32[16]{0} %c)\n")
    assert hlo_collectives(hlo) == {"all-gather": (1, 2048), "all-reduce": (1, 128), "reduce-scatter": (1, 16)}


def test_a_report_over_its_hbm_is_one_error_and_dump_writes_the_program(tiny, tmp_path):
    cfg = load_config(None, [f"output_dir={tiny['root']}/o", f"model.path={tiny['bert']}", "data.train=x.jsonl",
                             "batch_size=8"])
    report = compile_train_step(cfg, "v5e:2x2", dump=str(tmp_path / "dump"))
    hlo = (tmp_path / "dump" / "train_step.hlo.txt").read_text()
    assert "HloModule" in hlo and "all-reduce" in hlo
    assert "temp_size_in_bytes" in (tmp_path / "dump" / "train_step.memory.txt").read_text()
    report.temp_bytes += 17 * GIB
    with pytest.raises(InputError, match=r"does not fit by 1\.\d\d GiB"):
        require_fit(report)


def test_a_reranker_from_a_directory_without_weights_compiles(tmp_path):
    """An LLM reranker's score head is read from the checkpoint when it has one: without weights it starts fresh."""
    model = qwen2_1p5b_dir(tmp_path / "qwen2", layers=1)
    cfg = load_config(None, [f"output_dir={tmp_path}/o", f"model.path={model}", "data.train=x.jsonl",
                             "task=reranker", "reranker.special_token=<|endoftext|>", "reranker.group_size=2",
                             "reranker.max_length=64", "batch_size=8", "model.compute_dtype=bfloat16"])
    report = compile_train_step(cfg, "v5e:2x2", dump=None)
    assert report.fits and 2.3e8 < report.parameters < 2.9e8  # the embedding table and one layer
