"""A sweep's grid: `--grid key=v1,v2,...` options expanded into cells, each an ordinary run's config overrides.

A value may be relative to the config's own value (after its overrides), so one grid serves every recipe:
`learning_rate=x/3,x,x*3` is a third of the recipe's rate, the rate, and three times it. A cell is named by its
settings (`learning_rate=6.667e-06,seed=1`), which is also its folder: rerunning a sweep finds each cell again by
name, whatever order or grid it was started with. Every cell's config is loaded and validated before any runs, so a
bad value fails the sweep in one line before any training starts.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from typing import Any

from jaxretrieval.config import TrainConfig, load_config
from jaxretrieval.errors import InputError

RELATIVE = re.compile(r"^\s*(?:(?P<a>[0-9.eE+-]+)\s*\*\s*)?x\s*(?:(?P<op>[*/])\s*(?P<b>[0-9.eE+-]+))?\s*$")
SEED_KEY = "seed"


@dataclasses.dataclass(frozen=True)
class Cell:
    """One run of the sweep: its settings (grid key -> value, as written into the config) and its name."""

    settings: tuple[tuple[str, str], ...]

    @property
    def name(self) -> str:
        return ",".join(f"{k}={v}".replace("/", "_") for k, v in self.settings)

    @property
    def overrides(self) -> list[str]:
        return [f"{k}={v}" for k, v in self.settings]

    def setting(self, key: str) -> str | None:
        return dict(self.settings).get(key)

    @property
    def group(self) -> tuple[tuple[str, str], ...]:
        """Its settings but the seed: the cells of one group differ only by seed."""
        return tuple((k, v) for k, v in self.settings if k != SEED_KEY)


def parse_grid(option: str) -> tuple[str, list[str]]:
    """`key=v1,v2,...` -> (key, values); an InputError names the option."""
    key, sep, values = option.partition("=")
    items = [v.strip() for v in values.split(",") if v.strip()]
    if not sep or not key.strip() or not items:
        raise InputError(f"expected KEY=V1,V2,... (e.g. learning_rate=x/3,x,x*3), got {option!r}", "--grid")
    if len(set(items)) != len(items):
        raise InputError(f"{key.strip()} repeats a value: {option!r}", "--grid")
    return key.strip(), items


def resolve_value(key: str, value: str, base: Any) -> str:
    """A grid value as the config takes it: `x`, `x/F`, `x*F` or `F*x` times the base config's number, written
    with 4 significant digits; any other value as it is."""
    m = RELATIVE.match(value)
    if not m:
        return value
    if isinstance(base, bool) or not isinstance(base, (int, float)):
        raise InputError(f"{key}={value} is relative (x), but {key} is not a number in the config ({base!r})",
                         "--grid", field=key)
    try:
        factor = float(m["a"] or 1)
        if m["op"]:
            factor = factor * float(m["b"]) if m["op"] == "*" else factor / float(m["b"])
    except (ValueError, ZeroDivisionError):
        raise InputError(f"cannot read {value!r} as x/F, x*F or F*x", "--grid", field=key) from None
    out = base * factor
    return str(int(round(out))) if isinstance(base, int) else f"{out:.4g}"


def _config_value(cfg: TrainConfig, key: str) -> Any:
    obj = cfg
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def expand(config: str, grids: list[str], overrides: list[str]) -> tuple[TrainConfig, list[Cell]]:
    """(the base config, every cell in grid order, the last --grid varying fastest). Each cell's config is loaded
    here, so an unknown key or a bad value is refused before the sweep runs anything."""
    base = load_config(config, overrides)
    axes: list[tuple[str, list[str]]] = []
    for option in grids:
        key, values = parse_grid(option)
        if key in dict(axes):
            raise InputError(f"{key} has two --grid options", "--grid", field=key)
        if key == "output_dir":
            raise InputError("output_dir is where the sweep puts its cells, not a grid key", "--grid", field=key)
        try:
            current = _config_value(base, key)
        except AttributeError:
            raise InputError(f"unknown config key {key!r}", "--grid", field=key) from None
        axes.append((key, [resolve_value(key, v, current) for v in values]))
    if not axes:
        raise InputError("give at least one --grid KEY=V1,V2,...", "--grid")
    cells = [Cell(tuple(zip([k for k, _ in axes], combo))) for combo in itertools.product(*[v for _, v in axes])]
    for cell in cells:
        load_config(config, [*overrides, *cell.overrides])
    return base, cells


def parse_part(part: str) -> tuple[int, int]:
    """`K/N` (this launch runs cells K, K+N, K+2N, ..., counting from 1) -> (K, N)."""
    try:
        k, n = (int(x) for x in part.split("/"))
    except ValueError:
        raise InputError(f"expected K/N (e.g. 2/4), got {part!r}", "--part") from None
    if not 1 <= k <= n:
        raise InputError(f"K must be in 1..N, got {part!r}", "--part")
    return k, n
