"""Config schema: every shipped config parses; overrides, type checks and unknown keys fail clearly."""

import re
from pathlib import Path

import pytest

from jaxretrieval.config import load_config
from jaxretrieval.errors import InputError

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
BASE = ["output_dir=/tmp/x", "model.path=m", "data.train=d.jsonl"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_parses(path):
    cfg = load_config(path, ["output_dir=/tmp/somewhere"])
    assert cfg.batch_size > 0 and cfg.model.path and cfg.data.train


def test_there_are_shipped_configs():
    assert any(p.name == "quickstart.yaml" for p in CONFIGS)


def test_dotted_overrides_and_types(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("steps: 10\nloss:\n  temperature: 0.1\n")
    cfg = load_config(f, BASE + ["loss.temperature=0.02", "learning_rate=1e-3", "model.dropout=false",
                                 "steps=7"])
    assert cfg.steps == 7 and cfg.loss.temperature == 0.02 and cfg.learning_rate == 1e-3
    assert cfg.model.dropout is False


def test_unknown_key_lists_close_matches(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("learning_rte: 0.1\n")
    with pytest.raises(InputError, match=r"c\.yaml.*unknown config key 'learning_rte'.*learning_rate"):
        load_config(f, BASE)
    with pytest.raises(InputError, match=r"command line.*'loss\.temprature'.*loss\.temperature"):
        load_config(None, BASE + ["loss.temprature=0.1"])


def test_wrong_type_and_bad_value_name_the_key():
    with pytest.raises(InputError, match=r"\[steps\].*expected int"):
        load_config(None, BASE + ["steps=many"])
    with pytest.raises(InputError, match=r"\[loss.temperature\].*positive"):
        load_config(None, BASE + ["loss.temperature=0"])
    with pytest.raises(InputError, match=r"\[output_dir\]"):
        load_config(None, ["model.path=m", "data.train=d"])
    with pytest.raises(InputError, match=r"\[model.head_init\].*task distill"):
        load_config(None, BASE + ["model.head_init=principal"])
    with pytest.raises(InputError, match=r"\[model.max_length\].*dense and distill"):  # would do nothing there
        load_config(None, BASE + ["task=reranker", "model.max_length=384"])
    with pytest.raises(InputError, match=r"\[init_fresh\].*init_from"):  # would do nothing without it
        load_config(None, BASE + ["init_fresh=head"])


def test_invalid_yaml_names_the_line(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("steps: 1\nloss: [unclosed\n")
    with pytest.raises(InputError, match=r"c\.yaml:\d+: invalid YAML"):
        load_config(f, BASE)


def test_every_base_config_is_some_configs_base():
    bases = sorted((CONFIGS[0].parent / "base").glob("*.yaml"))
    named = {(p.parent / line.split(":", 1)[1].strip()).resolve() for p in CONFIGS
             for line in p.read_text().splitlines() if line.startswith("base:")}
    assert bases and {b.resolve() for b in bases} <= named


def test_base_configs_are_overridden_key_by_key(tmp_path):
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "b.yaml").write_text("steps: 5\nbatch_size: 16\nloss:\n  temperature: 0.1\n"
                                                "  symmetric: true\n")
    (tmp_path / "c.yaml").write_text("base: shared/b.yaml\nsteps: 7\nloss:\n  temperature: 0.2\n")
    cfg = load_config(tmp_path / "c.yaml", BASE)
    assert (cfg.steps, cfg.batch_size, cfg.loss.temperature, cfg.loss.symmetric) == (7, 16, 0.2, True)
    (tmp_path / "shared" / "b.yaml").write_text("stepz: 5\n")
    with pytest.raises(InputError, match=r"b\.yaml \[stepz\]"):  # the error names the file holding the key
        load_config(tmp_path / "c.yaml", BASE)
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(InputError, match=r"\[base\]: config is its own base"):
        load_config(tmp_path / "loop.yaml", BASE)
    (tmp_path / "lost.yaml").write_text("base: none.yaml\n")
    with pytest.raises(InputError, match=r"none\.yaml \[base\]: config file not found"):
        load_config(tmp_path / "lost.yaml", BASE)


@pytest.mark.parametrize("override, key", [("loss.temperature=inf", "loss.temperature"),
                                           ("learning_rate=nan", "learning_rate"), ("keep_checkpoints=0",
                                                                                     "keep_checkpoints"),
                                           ("log_every=0", "log_every"), ("max_bad_steps=0", "max_bad_steps")])
def test_holes_in_the_checks_are_config_errors(override, key):
    with pytest.raises(InputError, match=rf"\[{re.escape(key)}\]"):
        load_config(None, BASE + [override])


@pytest.mark.parametrize("overrides, field", [
    (["data.sampling=weights"], "data.sampling"),  # a mixture's setting on one source
    (["data.prompt=q: ", "task=reranker"], "data.prompt"),
    (["data.min_score=4", "task=distill", "distill.teacher_vectors=[t.npy]"], "data.min_score"),
])
def test_settings_a_single_source_would_ignore_are_errors(overrides, field):
    with pytest.raises(InputError) as e:
        load_config(None, ["output_dir=o", "model.path=m", "data.train=a.jsonl", *overrides])
    assert e.value.field == field
