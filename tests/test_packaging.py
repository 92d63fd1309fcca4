"""The serving install's packages (Pipfile's [serving], the lock's `serving` section): the same
files as the full install's, and all that they need."""

from __future__ import annotations

import importlib.metadata
import json
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from scripts.install_serving import requirements
from tests.conftest import REPO

LOCK = json.loads((REPO / "Pipfile.lock").read_text())
PIPFILE = tomllib.loads((REPO / "Pipfile").read_text())


@pytest.mark.parametrize("name", sorted(LOCK["serving"]))
def test_a_serving_package_is_the_full_installs_file_for_file(name):
    assert LOCK["serving"][name] == LOCK["default"][name]


@pytest.mark.parametrize("name", sorted(PIPFILE["serving"]))
def test_the_pipfile_pins_serving_to_the_locked_version(name):
    assert PIPFILE["serving"][name] == LOCK["serving"][name]["version"]
    assert name in PIPFILE["packages"], "a serving package is a runtime package too"


@pytest.mark.parametrize("name", sorted(LOCK["serving"]))
def test_what_a_serving_package_needs_is_in_the_serving_section(name):
    needed = {
        canonicalize_name(requirement.name)
        for requirement in map(Requirement, importlib.metadata.requires(name) or [])
        if not requirement.marker or requirement.marker.evaluate({"extra": ""})
    }
    assert needed <= {canonicalize_name(package) for package in LOCK["serving"]}


def test_the_full_stack_is_not_in_the_serving_section():
    full_stack = {"scikit-learn", "scipy", "pandas", "pyarrow", "mlflow", "prefect", "fsspec"}
    assert not full_stack & set(LOCK["serving"])


def test_the_install_step_asks_pip_for_each_locked_file_by_hash():
    lines = requirements(REPO / "Pipfile.lock").splitlines()
    assert len(lines) == len(LOCK["serving"])
    for line, (name, spec) in zip(lines, sorted(LOCK["serving"].items()), strict=True):
        assert line.startswith(f"{name}{spec['version']}")
        assert line.count("--hash=sha256:") == len(spec["hashes"])
        if spec.get("markers"):
            assert f"; {spec['markers']} --hash" in line
