"""The benchmarks import what exists: they run rarely, so a moved name would go unseen."""

from __future__ import annotations

import ast
import importlib

import pytest

from tests.conftest import REPO

BENCHMARKS = sorted((REPO / "benchmarks").glob("*.py"))


def project_imports(path) -> list[tuple[str, str | None]]:
    """(module, name) of every import of the project or its tests in `path`, nested ones too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            if node.module.split(".")[0] in ("ride_duration", "tests", "benchmarks"):
                found += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [
                (alias.name, None)
                for alias in node.names
                if alias.name.split(".")[0] in ("ride_duration", "tests", "benchmarks")
            ]
    return found


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda path: path.name)
def test_every_import_of_a_benchmark_resolves(path):
    for module, name in project_imports(path):
        imported = importlib.import_module(module)
        if name is not None:
            assert hasattr(imported, name) or importlib.util.find_spec(f"{module}.{name}"), (
                f"{path.name}: from {module} import {name}"
            )
