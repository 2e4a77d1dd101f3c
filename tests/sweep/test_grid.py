"""Grid options expanded into cells: relative values against the config's own, names that are folders, every
cell's config checked before anything runs."""

import pytest

from jaxretrieval.errors import InputError
from jaxretrieval.sweep.grid import Cell, expand, parse_grid, parse_part, resolve_value


def test_relative_values_take_the_config_value():
    assert [resolve_value("learning_rate", v, 3e-5) for v in ("x/3", "x", "x*3", "2*x", "1e-4")] == \
        ["1e-05", "3e-05", "9e-05", "6e-05", "1e-4"]
    assert resolve_value("batch_size", "x*2", 32) == "64"  # an int stays an int
    with pytest.raises(InputError, match="not a number"):
        resolve_value("model.path", "x*2", "some/dir")


def test_bad_grid_options_are_refused():
    assert parse_grid("seed=0, 1,2") == ("seed", ["0", "1", "2"])
    for bad in ("seed", "seed=", "=1,2", "seed=1,1"):
        with pytest.raises(InputError, match=r"--grid"):
            parse_grid(bad)
    assert parse_part("2/4") == (2, 4)
    for bad in ("0/4", "5/4", "a/b", "2"):
        with pytest.raises(InputError, match="--part"):
            parse_part(bad)


def test_cells_are_the_product_in_grid_order(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("output_dir: out\nmodel: {path: m}\ndata: {train: d.jsonl}\nlearning_rate: 3.0e-5\n")
    base, cells = expand(str(config), ["learning_rate=x/3,x", "seed=0,1,2"], ["batch_size=8"])
    assert base.batch_size == 8 and len(cells) == 6
    assert [c.name for c in cells[:3]] == [f"learning_rate=1e-05,seed={s}" for s in range(3)]
    assert cells[4].overrides == ["learning_rate=3e-05", "seed=1"]
    assert cells[0].group == cells[2].group == (("learning_rate", "1e-05"),) != cells[3].group
    assert Cell((("data.train", "a/b.jsonl"),)).name == "data.train=a_b.jsonl"  # one folder, no subfolders
    with pytest.raises(InputError, match=r"unknown config key 'lerning_rate'"):
        expand(str(config), ["lerning_rate=1,2"], [])
    with pytest.raises(InputError, match=r"\[batch_size\]"):
        expand(str(config), ["batch_size=8,-1"], [])
    with pytest.raises(InputError, match="two --grid"):
        expand(str(config), ["seed=1,2", "seed=3"], [])
