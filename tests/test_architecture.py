"""The package's shape (docs/ARCHITECTURE.md): imports point only down, no cycles, short modules."""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "ride_duration"
# What each subpackage may import of the project, besides itself.
MAY_IMPORT = {
    "core": set(),
    "forest": set(),
    "data": {"core"},
    "monitoring": {"core", "data"},
    "model": {"core", "data", "forest", "monitoring"},
    "batch": {"core", "data", "model", "monitoring"},
    "online": {"core", "data", "model"},
    "orchestration": {"core", "data", "model", "monitoring", "batch"},
}
# A module's size follows what it owns: past LOOK_AGAIN_LINES a warning asks whether it owns
# more than one thing; past MAX_LINES it fails.
LOOK_AGAIN_LINES = 300
MAX_LINES = 400


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules `name` imports, anywhere in it (function-level imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in known and m not in (name, "ride_duration")}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def subpackage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 else None


@pytest.mark.parametrize("module", sorted(modules()))
def test_a_module_imports_only_the_layers_below_it(module):
    own = subpackage(module)
    if own is None:  # the package itself, or the `python -m ride_duration.compile` command
        return
    outside = {subpackage(m) for m in graph()[module]} - {own}
    assert outside <= MAY_IMPORT[own], f"{module} imports {sorted(outside - MAY_IMPORT[own])}"


def test_no_module_imports_itself_back():
    edges = graph()
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        if module in path:
            cycle = (*path[path.index(module) :], module)
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if module in done:
            return
        for target in sorted(edges[module]):
            visit(target, (*path, module))
        done.add(module)

    for module in sorted(edges):
        visit(module, ())


@pytest.mark.parametrize("module", sorted(modules()))
def test_a_module_is_short(module):
    lines = len(modules()[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines"
    if lines > LOOK_AGAIN_LINES:
        warnings.warn(
            f"{module} has {lines} lines: does it own one thing?", UserWarning, stacklevel=1
        )


def test_every_subpackage_is_in_the_architecture():
    found = {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    assert found == set(MAY_IMPORT)
