"""Install the serving role: pyproject.toml's serving requirements, as Pipfile.lock pins them.

    python3 scripts/install_serving.py --venv DIR   # `make serving-env`: a new venv in DIR
    python3 scripts/install_serving.py --system     # the Dockerfile's serving target

The web service, the Lambda function and the stream consumer need, with a compiled model, only
what pyproject.toml's `[project].dependencies` and `serving` extra name: numpy, pyyaml, flask,
gunicorn, boto3, awslambdaric and prometheus-client. Nothing is pinned twice. Which packages:
pyproject.toml. Which versions and which files: Pipfile.lock, the lock of the full install (its
default section). pip resolves the requirements with the lock's versions as constraints and
downloads them into a wheelhouse; every file must have a hash the lock lists for it; pip then
installs the wheelhouse by hash (`--require-hashes --no-deps --no-index`), which byte-compiles
it, and checks that nothing is missing (`pip check`). The package itself is built into the same
wheelhouse and installed with its console scripts (in a venv, editable, so that it runs the
code in place). The venv keeps its wheelhouse (DIR/wheelhouse): the same files install offline
elsewhere with `pip install --no-index --find-links DIR/wheelhouse 'ride-duration[serving]'`.

The venv has no pip of its own: the pip running this script installs into it (`pip --python`).
Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROLE = "serving"


def canonical(name: str) -> str:
    """A distribution's name as the lock and the index compare it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def serving_requirements(pyproject: Path) -> list[str]:
    """What the serving role needs, as pyproject.toml says it: every role's dependencies and
    the serving extra's."""
    project = tomllib.loads(pyproject.read_text())["project"]
    return [*project["dependencies"], *project["optional-dependencies"][ROLE]]


def lock_constraints(lock: dict[str, dict[str, dict]]) -> str:
    """Every package of the lock's default section at its locked version, as pip constraints."""
    lines = []
    for name, spec in sorted(lock["default"].items()):
        line = f"{name}{spec['version']}"
        if spec.get("markers"):
            line += f"; {spec['markers']}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def distribution_name(file: Path) -> str:
    """The canonical distribution name of a wheel or sdist file."""
    if file.suffix == ".whl":
        return canonical(file.name.split("-")[0])
    return canonical(re.sub(r"\.(tar\.gz|zip)$", "", file.name).rsplit("-", 1)[0])


def locked_requirements(wheelhouse: Path, lock: dict[str, dict[str, dict]]) -> str:
    """The wheelhouse's files as pip requirement lines pinned by the lock, each with its hashes.

    Raises SystemExit when a file is not one the lock lists: pip resolved to something else.
    """
    default = {canonical(name): (name, spec) for name, spec in lock["default"].items()}
    lines = []
    for file in sorted(wheelhouse.iterdir()):
        if file.name.startswith("ride_duration-"):
            continue
        name, spec = default.get(distribution_name(file), (file.name, {"hashes": []}))
        digest = "sha256:" + hashlib.sha256(file.read_bytes()).hexdigest()
        if digest not in spec["hashes"]:
            raise SystemExit(f"error: {file.name} is not a file Pipfile.lock pins for {name}")
        lines.append(
            " ".join([f"{name}{spec['version']}", *(f"--hash={h}" for h in spec["hashes"])])
        )
    return "\n".join(lines) + "\n"


def install(python: Path, wheelhouse: Path, *, editable: bool, cache: bool = True) -> None:
    """Fill `wheelhouse` with the serving files and the package, and install them into
    `python`'s environment.

    `editable`: install the package as a link to this checkout (a developer's venv), not a copy.
    `cache`: let pip keep the files it downloads (not in an image, where they would stay).
    """
    lock = json.loads((ROOT / "Pipfile.lock").read_text())
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    quiet = ["--quiet", *([] if cache else ["--no-cache-dir"])]
    target = [] if python == Path(sys.executable) else ["--python", str(python)]
    wheelhouse.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="serving-") as scratch:
        constraints = Path(scratch) / "constraints.txt"
        constraints.write_text(lock_constraints(lock))
        download = [*pip, "download", *quiet, "--dest", str(wheelhouse)]
        subprocess.run(
            [
                *download,
                "--constraint",
                str(constraints),
                *serving_requirements(ROOT / "pyproject.toml"),
            ],
            check=True,
        )
        requirements = Path(scratch) / "requirements.txt"
        requirements.write_text(locked_requirements(wheelhouse, lock))
        subprocess.run(
            [
                *pip,
                *target,
                "install",
                *quiet,
                "--no-index",
                "--find-links",
                str(wheelhouse),
                "--no-deps",
                "--require-hashes",
                "--requirement",
                str(requirements),
            ],
            check=True,
        )
    subprocess.run(
        [*pip, "wheel", *quiet, "--no-deps", "--wheel-dir", str(wheelhouse), str(ROOT)], check=True
    )
    package = (
        ["--editable", str(ROOT)]
        if editable
        else [str(next(wheelhouse.glob("ride_duration-*.whl")))]
    )
    subprocess.run([*pip, *target, "install", *quiet, "--no-deps", *package], check=True)
    subprocess.run([*pip, *target, "check"], check=True, stdout=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--venv", type=Path, help="create this virtual environment and fill it")
    where.add_argument("--system", action="store_true", help="install into this interpreter")
    args = parser.parse_args(argv)
    if sys.version_info[:2] != (3, 11):
        print(
            f"error: the serving install needs Python 3.11, and this is {sys.version.split()[0]}:"
            " run it with a Python 3.11 (make serving-env PYTHON=python3.11)",
            file=sys.stderr,
        )
        return 2
    if args.system:
        with tempfile.TemporaryDirectory(prefix="wheelhouse-") as wheelhouse:
            install(Path(sys.executable), Path(wheelhouse), editable=False, cache=False)
    else:
        venv = [sys.executable, "-m", "venv", "--clear", "--without-pip", str(args.venv)]
        subprocess.run(venv, check=True)
        install(args.venv / "bin" / "python", args.venv / "wheelhouse", editable=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
