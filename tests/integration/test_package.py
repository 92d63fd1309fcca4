"""The package as pip installs it: a fresh venv, the serving install's wheelhouse (the lock's files
and the package's wheel, `make serving-env`) and no index, then its console scripts; and the
full install's console scripts scoring a month for real."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from packaging.utils import canonicalize_name

from tests.conftest import REPO
from tests.integration.conftest import Services, Trained, serving_install
from tests.support.failures import assert_one_line_failure
from tests.support.troubleshooting import assert_documented

TEMPLATE = "{taxi_type}_tripdata_{year:04d}-{month:02d}.parquet"
LOCK = json.loads((REPO / "Pipfile.lock").read_text())
# Which library the line names is the first the command imports that is missing (fsspec,
# prefect, ...): the line is the same otherwise.
BATCH_ERROR = re.compile(
    r"error: this command needs the batch install, and \w+ is not installed: "
    r"pip install 'ride-duration\[batch\]', or run it from the project's environment "
    r"\(make install\)"
)


def _offline_env(tmp_path: Path) -> dict[str, str]:
    """No index, no pip configuration of this machine's (its extra indexes and find-links), no
    project environment: pip sees the wheelhouse alone."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PIP_", "VIRTUAL_ENV", "PYTHON"))
    }
    return env | {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "HOME": str(tmp_path)}


def _fresh_install(tmp_path: Path, requirement: str) -> tuple[Path, dict[str, str]]:
    """A new venv with `requirement` installed from the serving wheelhouse alone."""
    wheelhouse = serving_install().bin.parent / "wheelhouse"
    venv = tmp_path / "venv"
    env = _offline_env(tmp_path)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env, timeout=120)
    install = [str(venv / "bin" / "pip"), "install", "--quiet", "--find-links", str(wheelhouse)]
    result = subprocess.run(
        [*install, requirement], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return venv / "bin", env


def _command(
    bin_dir: Path, name: str, *args: str, env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess:
    """Run the console script `name` of the install in `bin_dir`, as a user types it."""
    return subprocess.run(
        [str(bin_dir / name), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=240
    )


def _installed(bin_dir: Path) -> dict[str, str]:
    script = (
        "import importlib.metadata as m, json; "
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
    )
    listing = subprocess.run(
        [str(bin_dir / "python"), "-c", script], capture_output=True, text=True, check=True
    ).stdout
    return {canonicalize_name(name): version for name, version in json.loads(listing).items()}


@pytest.mark.parametrize(
    ("requirement", "role_packages"),
    [
        (
            "ride-duration[serving]",
            {"numpy", "pyyaml", "flask", "gunicorn", "boto3", "awslambdaric", "prometheus-client"},
        ),
        ("ride-duration", {"numpy", "pyyaml"}),
    ],
    ids=["serving", "every role's"],
)
def test_a_fresh_venv_installs_the_package_offline_at_the_locked_versions(
    tmp_path: Path, requirement: str, role_packages: set[str]
):
    bin_dir, env = _fresh_install(tmp_path, requirement)
    installed = _installed(bin_dir)
    assert role_packages <= set(installed)
    locked = {canonicalize_name(name): spec["version"] for name, spec in LOCK["default"].items()}
    others = set(installed) - {"ride-duration", "pip", "setuptools"}
    assert {name: f"=={installed[name]}" for name in others} == {n: locked[n] for n in others}
    assert not {"prefect", "mlflow", "pandas", "pyarrow", "scikit-learn"} & set(installed)

    # Every console script answers --help; a batch command says which extra it needs.
    work = tmp_path / "work"
    work.mkdir()
    commands = ("score", "backfill", "train", "stream", "compile", "migrate", "profile", "report")
    for command in commands:
        result = _command(bin_dir, f"ride-duration-{command}", "--help", env=env, cwd=work)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"usage: ride-duration-{command}")
    result = _command(bin_dir, "ride-duration-score", "green", "2021", "3", env=env, cwd=work)
    said = "error: this command needs the batch install, and "
    assert_one_line_failure(result, said, 2, workdir=work)
    line = next(line for line in result.stderr.splitlines() if said in line)
    assert BATCH_ERROR.fullmatch(line), line
    assert_documented(line)


def test_the_full_installs_console_script_scores_a_month(
    services: Services, trained: Trained, input_dir: Path, tmp_path: Path
):
    env = {
        **services.env,
        "INPUT_URI_TEMPLATE": str(input_dir / TEMPLATE),
        "OUTPUT_ROOT": str(tmp_path / "out"),
    }
    bin_dir = Path(sys.executable).parent
    result = _command(bin_dir, "ride-duration-score", "green", "2021", "3", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    closing = rf"green 2021-03: \d+ predictions by ride-duration/{trained.version} in \S+\n"
    assert re.fullmatch(closing, result.stdout), result.stdout
    output = tmp_path / "out/taxi_type=green/year=2021/month=03/predictions.parquet"
    assert set(pq.read_table(output).column("model_version").to_pylist()) == {
        f"ride-duration/{trained.version}"
    }
