"""The package's import rules, read from the code itself: every import of jaxretrieval/**/*.py (function-local and
TYPE_CHECKING ones too) must stay in its room or point down the layer order that docs/architecture.md writes once;
no module may import itself around a loop; no private name may cross modules; and jaxretrieval's own modules are
imported at the top of a file (a function-local import of one is how circles used to be hidden)."""

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "jaxretrieval"


def layer_order() -> dict[str, int]:
    """room -> layer, from the numbered list between the layers markers of docs/architecture.md."""
    text = (REPO / "docs" / "architecture.md").read_text()
    block = re.search(r"<!-- layers:.*?-->(.*?)<!-- /layers -->", text, re.S)
    assert block, "docs/architecture.md lost its layers block"
    rooms = {}
    for line in block.group(1).strip().splitlines():
        number, names = re.fullmatch(r"(\d+)\.\s+(.+)", line.strip()).groups()
        for name in names.split(","):
            rooms[name.strip()] = int(number)
    return rooms


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room_of(module: str) -> str:
    """jaxretrieval.train.loop -> train; jaxretrieval.cli -> cli; jaxretrieval -> '' (the package's face)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


class Import:
    def __init__(self, source: str, target: str, names: list[str], line: int, local: bool):
        self.source, self.target, self.names, self.line, self.local = source, target, names, line, local

    def __repr__(self):
        return f"{self.source}:{self.line} imports {self.target} {self.names}"


def resolve(target: str, known: set[str]) -> str:
    """The module an import names: `from jaxretrieval.models import layers` names jaxretrieval.models.layers."""
    return target if target in known else target.rsplit(".", 1)[0] if target.rsplit(".", 1)[0] in known else target


def read_imports() -> list[Import]:
    files = sorted(PACKAGE.rglob("*.py"))
    known = {module_name(p) for p in files}
    out = []
    for path in files:
        source = module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        local_nodes = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                       for n in ast.walk(f)}
        for node in ast.walk(tree):
            local = id(node) in local_nodes
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("jaxretrieval"):
                        out.append(Import(source, resolve(alias.name, known), [], node.lineno, local))
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jaxretrieval"):
                for alias in node.names:  # `from pkg import module` imports that module
                    full = f"{node.module}.{alias.name}"
                    target = full if full in known else node.module
                    out.append(Import(source, target, [alias.name] if target == node.module else [], node.lineno,
                                      local))
    return out


IMPORTS = read_imports()


def test_the_reader_sees_the_imports_it_should():
    """Guards the test itself: a reader that saw nothing would pass everything."""
    pairs = {(i.source, i.target) for i in IMPORTS}
    assert ("jaxretrieval.train.loop", "jaxretrieval.train.tasks") in pairs
    assert ("jaxretrieval.cli", "jaxretrieval.door") in pairs
    assert ("jaxretrieval.models.families", "jaxretrieval.models.bert") in pairs
    assert len(IMPORTS) > 150


def test_every_room_has_a_layer():
    layers = layer_order()
    rooms = {room_of(module_name(p)) for p in PACKAGE.rglob("*.py")} - {""}
    assert rooms <= set(layers), f"rooms without a layer in docs/architecture.md: {sorted(rooms - set(layers))}"
    assert set(layers) <= rooms, f"layers name rooms that do not exist: {sorted(set(layers) - rooms)}"


def test_imports_point_down_the_layers():
    layers = layer_order()
    bad = []
    for imp in IMPORTS:
        src, dst = room_of(imp.source), room_of(imp.target)
        if src == dst or not dst:
            continue
        if layers[dst] >= layers[src]:
            bad.append(f"{imp}: {src} (layer {layers[src]}) -> {dst} (layer {layers[dst]})")
    assert not bad, "imports that do not point down the layers:\n" + "\n".join(bad)


def test_no_import_circles():
    graph: dict[str, set[str]] = {}
    for imp in IMPORTS:
        if imp.target != imp.source:
            graph.setdefault(imp.source, set()).add(imp.target)
    circles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                circles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)


def test_no_private_name_crosses_modules():
    bad = [imp for imp in IMPORTS for name in imp.names if name.startswith("_")]
    assert not bad, f"private names imported from another module: {bad}"


def test_own_modules_are_imported_at_the_top():
    bad = [imp for imp in IMPORTS if imp.local]
    assert not bad, f"function-local imports of jaxretrieval modules: {bad}"


@pytest.mark.parametrize("module", sorted(module_name(p) for p in PACKAGE.rglob("*.py")
                                          if p.name != "__init__.py"))
def test_every_module_has_a_unit_test_that_imports_it(module):
    """tests/<room>/test_<module>.py (tests/test_<module>.py for top-level modules) mirrors the package."""
    parts = module.split(".")[1:]
    test = REPO / "tests" / Path(*parts[:-1]) / f"test_{parts[-1]}.py"
    assert test.exists(), f"{module} has no unit test at {test.relative_to(REPO)}"
    imported = set()
    for node in ast.walk(ast.parse(test.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
    assert module in imported, f"{test.relative_to(REPO)} does not import {module}"
