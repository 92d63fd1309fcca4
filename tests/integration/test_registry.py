"""`ride_duration.model.registry` answers what MlflowClient answers, or nothing: against a real
sqlite store made by MLflow and the session's real tracking server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mlflow
import mlflow.sklearn
import numpy as np
import pytest

from ride_duration.core.errors import TrackingServerUnreachableError
from ride_duration.model import registry
from ride_duration.model.loading import load_model
from ride_duration.model.resolve import resolve_model
from tests.conftest import REPO
from tests.integration.conftest import Services, Trained
from tests.support.servers import refused_url

RECORDS = [{"PU_DO": f"{i % 7}_{i % 5}", "trip_distance": float(i % 11)} for i in range(200)]
TARGET = [r["trip_distance"] * 2.0 + (i % 7) for i, r in enumerate(RECORDS)]


def mlflow_answer(client, name: str, selector: str) -> registry.Version:
    if selector.startswith("@"):
        version = client.get_model_version_by_alias(name, selector[1:])
    elif selector == "latest":
        version = max(
            client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version)
        )
    else:
        version = client.get_model_version(name, selector)
    return registry.Version(
        name=version.name,
        version=str(version.version),
        run_id=version.run_id,
        location=client.get_model_version_download_uri(name, version.version),
    )


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory) -> str:
    """A sqlite store with two versions of a small model and an alias, made by MLflow."""
    folder = tmp_path_factory.mktemp("sqlite-store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    script = f"""
import mlflow, mlflow.sklearn
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
mlflow.set_tracking_uri({uri!r})
mlflow.set_experiment("registry-test")
records = {RECORDS!r}
target = {TARGET!r}
for _ in range(2):
    with mlflow.start_run():
        model = make_pipeline(DictVectorizer(), LinearRegression()).fit(records, target)
        mlflow.sklearn.log_model(model, name="model", serialization_format="cloudpickle",
                                 registered_model_name="small")
mlflow.MlflowClient().set_registered_model_alias("small", "production", "1")
"""
    # In a process of its own: MLflow's sqlite store migrates a new database on first use.
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=folder, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return uri


@pytest.mark.parametrize("selector", ["@production", "1", "2", "latest"])
def test_the_sqlite_store_is_read_as_mlflow_reads_it(sqlite_store, selector):
    client = mlflow.MlflowClient(tracking_uri=sqlite_store, registry_uri=sqlite_store)
    assert registry.lookup(sqlite_store, "small", selector) == mlflow_answer(
        client, "small", selector
    )


@pytest.mark.parametrize(
    ("name", "selector"),
    [("small", "@nope"), ("small", "9"), ("no-such-model", "1"), ("no-such-model", "latest")],
)
def test_what_the_sqlite_store_does_not_hold_is_left_to_mlflow(sqlite_store, name, selector):
    assert registry.lookup(sqlite_store, name, selector) is None


def test_a_missing_sqlite_file_or_another_store_is_left_to_mlflow(tmp_path):
    assert registry.lookup(f"sqlite:///{tmp_path / 'none.db'}", "small", "1") is None
    assert registry.lookup("databricks://profile", "small", "1") is None
    assert registry.lookup(str(tmp_path / "mlruns"), "small", "1") is None


def test_the_tracking_server_is_read_as_mlflow_reads_it(services: Services, trained: Trained):
    client = mlflow.MlflowClient(tracking_uri=services.tracking_uri)
    for selector in ("@production", trained.version, "latest"):
        expected = mlflow_answer(client, "ride-duration", selector)
        assert registry.lookup(services.tracking_uri, "ride-duration", selector) == expected
    assert registry.lookup(services.tracking_uri, "ride-duration", "@nope") is None
    assert registry.lookup(services.tracking_uri, "no-such-model", "1") is None


def trusted(store: str) -> tuple[str, ...]:
    """Names of the store's registry, and its artifacts (kept beside it, not in ./mlruns)."""
    return ("models:/", "runs:/", str(Path(store.removeprefix("sqlite:///")).parent))


def test_a_server_with_an_s3_artifact_root_is_trusted_by_default(
    services: Services, trained: Trained
):
    """The course's setup (`--default-artifact-root s3://...`, `--no-serve-artifacts`): the
    locations the server reports for its experiments are trusted, with no setting."""
    from mlflow.entities import ViewType

    client = mlflow.MlflowClient(tracking_uri=services.tracking_uri)
    recorded = {e.artifact_location for e in client.search_experiments(view_type=ViewType.ALL)}
    assert set(registry.artifact_locations(services.tracking_uri)) == recorded
    model = resolve_model("models:/ride-duration@production", tracking_uri=services.tracking_uri)
    assert model.location.startswith("s3://")
    assert resolve_model(model.location, tracking_uri=services.tracking_uri).run_id == model.run_id


def test_a_server_that_does_not_answer_is_said_so_and_reports_no_artifact_locations(
    monkeypatch,
):
    """Said here, after MLflow's own retries (MLflow would only ask it again); the default
    trust then has none of the server's locations."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    dead = refused_url()
    with pytest.raises(TrackingServerUnreachableError, match=f"^MLflow tracking server {dead} did"):
        registry.lookup(dead, "ride-duration", "1")
    assert registry.artifact_locations(dead) is None


def test_a_model_found_by_the_lookup_loads_as_mlflow_loads_it(sqlite_store, monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_store)
    model = resolve_model("models:/small@production", trusted(sqlite_store))
    assert (model.name, model.version, model.resolved_uri) == ("small", "1", "models:/small/1")
    assert model.location
    assert not model.location.startswith("models:/")
    loaded = load_model(model.resolved_uri, model.location)
    reference = mlflow.sklearn.load_model(model.location)
    np.testing.assert_array_equal(loaded.predict(RECORDS), reference.predict(RECORDS))


def test_scoring_with_a_registered_model_imports_no_mlflow(sqlite_store, tmp_path):
    """The whole path of a score run's model: resolve, load, predict, in a fresh process."""
    script = f"""
import os, sys
os.environ["MLFLOW_TRACKING_URI"] = {sqlite_store!r}
from ride_duration.model.resolve import resolve_model
from ride_duration.model.loading import load_model
model = resolve_model("models:/small@production", {trusted(sqlite_store)!r})
pipeline = load_model(model.resolved_uri, model.location)
pipeline.predict([{{"PU_DO": "1_2", "trip_distance": 3.0}}])
assert "mlflow" not in sys.modules, sorted(m for m in sys.modules if m.startswith("mlflow"))[:5]
print("ok")
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.stdout.strip() == "ok", result.stderr[-3000:]
