"""The package's requirements, pinned once: pyproject.toml names them by role, the Pipfile's
[packages] are all of them together, and the serving install takes Pipfile.lock's files for the
serving role (scripts/install_serving.py)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from scripts.install_serving import (
    distribution_name,
    lock_constraints,
    locked_requirements,
    serving_requirements,
)
from tests.conftest import REPO

LOCK = json.loads((REPO / "Pipfile.lock").read_text())
PIPFILE = tomllib.loads((REPO / "Pipfile").read_text())
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
ROLES = {"": PROJECT["dependencies"], **PROJECT["optional-dependencies"]}
FULL_STACK = {"scikit-learn", "scipy", "pandas", "pyarrow", "mlflow", "prefect", "fsspec", "s3fs"}


def pyproject_specifiers() -> dict[str, str]:
    """Each requirement of every role, as the Pipfile writes it ("*" for any version)."""
    found: dict[str, str] = {}
    for requirements in ROLES.values():
        for requirement in map(Requirement, requirements):
            specifier = str(requirement.specifier) or "*"
            assert found.setdefault(requirement.name, specifier) == specifier, requirement.name
    return found


def test_the_pipfile_packages_are_the_pyproject_requirements_of_every_role():
    assert PIPFILE["packages"] == pyproject_specifiers()


def test_the_pipfile_has_no_second_list_of_pins():
    assert set(PIPFILE) == {"source", "packages", "dev-packages", "requires"}
    assert set(LOCK) == {"_meta", "default", "develop"}


def needs(name: str) -> set[str]:
    """`name` and everything it needs, by the metadata of this (the full) install."""
    found = {canonicalize_name(name)}
    for requirement in map(Requirement, importlib.metadata.requires(name) or []):
        if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
            continue
        if canonicalize_name(requirement.name) not in found:
            found |= needs(requirement.name)
    return found


def test_the_serving_role_needs_nothing_of_the_full_stack():
    closure = set().union(
        *(needs(Requirement(r).name) for r in serving_requirements(REPO / "pyproject.toml"))
    )
    assert not closure & FULL_STACK
    assert closure <= {canonicalize_name(name) for name in LOCK["default"]}


def test_the_serving_requirements_are_every_roles_and_the_serving_extras():
    assert serving_requirements(REPO / "pyproject.toml") == [*ROLES[""], *ROLES["serving"]]


def test_the_constraints_pin_every_package_of_the_lock_at_its_version():
    lines = lock_constraints(LOCK).splitlines()
    assert len(lines) == len(LOCK["default"])
    for line, (name, spec) in zip(lines, sorted(LOCK["default"].items()), strict=True):
        assert line.startswith(f"{name}{spec['version']}")
        markers = spec.get("markers")
        assert line.endswith(f"; {markers}") if markers else ";" not in line


@pytest.mark.parametrize(
    ("file", "name"),
    [
        ("numpy-2.4.6-cp311-cp311-manylinux_2_27_x86_64.whl", "numpy"),
        ("python_dateutil-2.9.0.post0-py2.py3-none-any.whl", "python-dateutil"),
        ("PyYAML-6.0.4.tar.gz", "pyyaml"),
        ("snapshot_restore_py-1.0.0.zip", "snapshot-restore-py"),
        ("zope.interface-7.2-cp311-cp311-manylinux2014_x86_64.whl", "zope-interface"),
    ],
)
def test_a_files_distribution_name_is_read_off_its_name(file, name):
    assert distribution_name(Path(file)) == name


def _lock_of(files: dict[str, bytes]) -> dict:
    return {
        "default": {
            name.split("-")[0]: {
                "version": "==1.0",
                "hashes": ["sha256:" + hashlib.sha256(content).hexdigest()],
            }
            for name, content in files.items()
        }
    }


@pytest.mark.parametrize(
    ("in_the_wheelhouse", "locked", "refused"),
    [
        ({"six-1.0-py3-none-any.whl": b"six"}, {"six-1.0-py3-none-any.whl": b"six"}, None),
        ({"six-1.0-py3-none-any.whl": b"other"}, {"six-1.0-py3-none-any.whl": b"six"}, "six"),
        ({"evil-1.0-py3-none-any.whl": b"x"}, {"six-1.0-py3-none-any.whl": b"six"}, "evil"),
    ],
    ids=["the locked file", "another file of a locked package", "a package the lock lacks"],
)
def test_only_files_the_lock_lists_are_installed(tmp_path, in_the_wheelhouse, locked, refused):
    for name, content in in_the_wheelhouse.items():
        (tmp_path / name).write_bytes(content)
    (tmp_path / "ride_duration-0.1.0-py3-none-any.whl").write_bytes(b"built here")
    lock = _lock_of(locked)
    if refused:
        with pytest.raises(SystemExit, match=f"is not a file Pipfile.lock pins for {refused}"):
            locked_requirements(tmp_path, lock)
    else:
        [line] = locked_requirements(tmp_path, lock).splitlines()
        assert line == f"six==1.0 --hash={lock['default']['six']['hashes'][0]}"


def test_every_command_is_a_console_script_of_the_package():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    commands = ("score", "backfill", "train", "stream", "compile", "migrate", "profile", "report")
    assert sorted(scripts) == sorted(f"ride-duration-{command}" for command in commands)
    for command in commands:
        module, function = scripts[f"ride-duration-{command}"].split(":")
        assert (module, function) == (f"ride_duration.{command}", "command")
        assert (REPO / module.replace(".", "/")).with_suffix(".py").is_file()
