"""Fixtures shared by unit and integration tests, and the environment every test starts from.

Tests never depend on the user's shell: the project's own variables, Prefect's, MLflow's and
AWS's are cleared for the session (tests set what they need), and Prefect's home is a folder of
the session's, so the user's Prefect profile (which `make demo` points at its local server) is
neither read nor changed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Variables of other tools the product reads or sets; the project's own come from the settings.
FOREIGN_PREFIXES = ("PREFECT_", "MLFLOW_", "AWS_")
# What --help and argument errors must answer without importing.
HEAVY = ("prefect", "mlflow", "sklearn", "scipy", "pandas")


def pytest_configure(config: pytest.Config) -> None:
    """Start from a clean environment, before any test module imports Prefect or MLflow."""
    from ride_duration.core.settings import environment_variables

    tlc_data_dir = os.environ.get("TLC_DATA_DIR")
    for name in list(os.environ):
        if name in environment_variables() or name.startswith(FOREIGN_PREFIXES):
            del os.environ[name]
    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="ride-duration-tests-prefect-")
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    if tlc_data_dir:  # absolute, since tests run commands from other folders
        os.environ["TLC_DATA_DIR"] = str(Path(tlc_data_dir).resolve())


# Under pytest-xdist with --dist loadfile (make test), each module runs on one worker, so that
# its session servers start once per worker; the modules of one Prefect server and its workers
# (the deployments and the UI) share a worker too.
SHARED_WORKER = {
    "tests/integration/test_deployments.py": "prefect-server",
    "tests/integration/test_ui.py": "prefect-server",
}


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """Keep each module, or each group of SHARED_WORKER, on one worker (pytest-xdist's own
    xdist_group marker does not reach its scheduler under pytest 9)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class ModuleGroups(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = super()._split_scope(nodeid)
            return SHARED_WORKER.get(module, module)

    return ModuleGroups(config, log)


@pytest.fixture(scope="session")
def tlc_data_dir() -> Path:
    """The folder of real TLC files named by TLC_DATA_DIR; tests that need it skip without it."""
    value = os.environ.get("TLC_DATA_DIR")
    if not value or not Path(value, "green_tripdata_2021-01.parquet").is_file():
        pytest.skip("TLC_DATA_DIR is not set to a folder of real TLC files")
    return Path(value)


@pytest.fixture(autouse=True)
def _servers_answer_again():
    """Each test asks tracking servers afresh: a server one test found down (its port reused
    since) is not taken as down by the next (`model.rest` remembers it for a minute)."""
    from ride_duration.model import rest

    rest._unanswered.clear()
