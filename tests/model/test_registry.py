"""The registry read without MLflow (`model.registry`): exact answers, else None.

Against stores MLflow itself made: tests/integration/test_registry.py. Here the tables are the
columns this module reads, so each case the code decides on is one row of a table.
"""

from __future__ import annotations

import pytest

from ride_duration.core.errors import TrackingServerUnreachableError
from ride_duration.model import registry
from tests.support.registry_store import sqlite_registry


@pytest.fixture
def store(tmp_path):
    return sqlite_registry(
        tmp_path / "mlflow.db",
        [
            ("ride", 1, "r1", "mlruns/1/a/artifacts", None, "None"),
            ("ride", 2, "r2", "models:/m-2", "mlruns/1/models/m-2/artifacts", "None"),
            ("ride", 3, "r3", "mlruns/1/c/artifacts", None, "Deleted_Internal"),
            ("logged", 1, "r4", "models:/m-4", None, "None"),
        ],
        [("ride", "production", 1)],
    )


@pytest.mark.parametrize(
    ("name", "selector", "expected"),
    [
        ("ride", "@production", registry.Version("ride", "1", "r1", "mlruns/1/a/artifacts")),
        ("ride", "2", registry.Version("ride", "2", "r2", "mlruns/1/models/m-2/artifacts")),
        ("ride", "latest", registry.Version("ride", "2", "r2", "mlruns/1/models/m-2/artifacts")),
        ("ride", "3", None),  # being deleted
        ("ride", "@staging", None),
        ("other", "latest", None),
        ("logged", "1", None),  # files only MLflow can locate
    ],
)
def test_a_sqlite_store_answers_exactly_or_not_at_all(store, name, selector, expected):
    assert registry.lookup(store, name, selector) == expected


@pytest.mark.parametrize(
    "tracking_uri",
    ["", "file:///tmp/mlruns", "databricks", "sqlite:////no/such/mlflow.db", "postgresql://h/db"],
)
def test_other_stores_are_left_to_mlflow(tracking_uri):
    assert registry.lookup(tracking_uri, "ride", "@production") is None


def closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("mlflow_there", [True, False])
def test_a_tracking_server_that_does_not_answer_is_said_so(
    not_installed, monkeypatch, mlflow_there
):
    """Asked again already, it is not asked once more through MLflow; in the serving install,
    MODEL_LOCATION's fallback needs to hear that the server is down."""
    if not mlflow_there:
        not_installed("mlflow")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    uri = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(TrackingServerUnreachableError) as raised:
        registry.lookup(uri, "ride", "1")
    assert str(raised.value) == (
        f"MLflow tracking server {uri} did not answer (Connection refused): "
        "start it or set MLFLOW_TRACKING_URI"
    )


@pytest.mark.parametrize(
    ("tracking_uri", "covered"),
    [
        ("http://h:5000", True),
        ("https://h", True),
        ("sqlite:///mlflow.db", True),
        ("sqlite:////abs/mlflow.db", True),
        ("file:///tmp/mlruns", False),
        ("databricks", False),
        ("", False),
    ],
)
def test_which_stores_this_module_reads(tracking_uri, covered):
    assert registry.covers(tracking_uri) is covered


def test_the_artifact_locations_a_sqlite_stores_experiments_record(tmp_path):
    import sqlite3

    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        db.execute("CREATE TABLE experiments (experiment_id INT, artifact_location TEXT)")
        rows = [(0, "/srv/mlruns/0"), (1, "s3://bucket/1"), (2, "/srv/mlruns/0"), (3, None)]
        db.executemany("INSERT INTO experiments VALUES (?, ?)", rows)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert registry.artifact_locations(uri) == ("/srv/mlruns/0", "s3://bucket/1")


@pytest.mark.parametrize("tracking_uri", ["", "databricks", "sqlite:////no/such/mlflow.db"])
def test_a_store_whose_artifact_locations_cannot_be_read_gives_none(tracking_uri):
    assert registry.artifact_locations(tracking_uri) is None
