"""A model's files: where they may lie by default, and what loading them leaves behind.

A sqlite store made by MLflow in a folder of its own, with twenty registered versions and a
stray one whose files lie outside the store; each is read from another folder, as a web
service or a worker started from the project folder reads it. The same twenty versions on a
moto S3 server of this module's are loaded by their s3:// locations.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from ride_duration.core.errors import ModelNotTrustedError
from ride_duration.model import service
from ride_duration.model.resolve import resolve_model
from tests.support.servers import moto_s3

pytestmark = pytest.mark.integration

VERSIONS = 20
BUCKET = "model-files"
RIDES = [{"PULocationID": 1, "DOLocationID": 2, "trip_distance": 3.0}]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """The store's folder: mlflow.db and mlruns/, trained in it with an absolute sqlite URI.

    "small" has VERSIONS versions, logged in runs of the store's experiment; "stray" has one,
    registered from a folder outside the store.
    """
    folder = tmp_path_factory.mktemp("srv-mlflow")
    stray = tmp_path_factory.mktemp("elsewhere") / "model"
    script = f"""
import mlflow, mlflow.sklearn
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
mlflow.set_tracking_uri("sqlite:///{folder}/mlflow.db")
mlflow.set_experiment("files")
rows = [{{"PU_DO": f"{{i % 7}}_{{i % 5}}", "trip_distance": float(i % 11)}} for i in range(50)]
for i in range({VERSIONS}):
    target = [r["trip_distance"] * (2.0 + i) for r in rows]
    model = make_pipeline(DictVectorizer(), LinearRegression()).fit(rows, target)
    with mlflow.start_run():
        mlflow.sklearn.log_model(model, name="model", serialization_format="cloudpickle",
                                 registered_model_name="small")
mlflow.sklearn.save_model(model, {str(stray)!r}, serialization_format="cloudpickle")
client = mlflow.MlflowClient()
client.create_registered_model("stray")
client.create_model_version("stray", {str(stray)!r})
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=folder, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return folder


@pytest.fixture
def elsewhere(tmp_path, monkeypatch) -> Path:
    """Another folder, the current one; and a temporary folder of the test's own to count."""
    monkeypatch.chdir(tmp_path)
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setenv("TMPDIR", str(temporary))
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    return temporary


def left_behind(temporary: Path) -> tuple[int, int]:
    """The model folders in `temporary`, and the bytes of their files."""
    folders = list(temporary.glob("ride-duration-model-*"))
    size = sum(f.stat().st_size for d in folders for f in d.rglob("*") if f.is_file())
    return len(folders), size


def test_a_store_trained_in_another_folder_is_trusted_by_default(store, elsewhere):
    tracking_uri = f"sqlite:///{store}/mlflow.db"
    model = resolve_model("models:/small/1", tracking_uri=tracking_uri)
    assert Path(model.location.removeprefix("file://")).is_relative_to(store / "mlruns")
    loaded = service.ServingModel(model, service.predictor_for(model))
    assert loaded.predict_rides(RIDES).shape == (1,)


def test_a_version_whose_files_lie_outside_the_store_is_refused(store, elsewhere):
    tracking_uri = f"sqlite:///{store}/mlflow.db"
    with pytest.raises(ModelNotTrustedError, match=r"models:/stray/1 has its files at .*elsewhere"):
        resolve_model("models:/stray/1", tracking_uri=tracking_uri)


def test_twenty_local_loads_copy_nothing(store, elsewhere):
    """Ten versions by their registry names, ten by their folders as file: URIs (as a tracking
    server with a local artifact root gives them): each folder is read where it is."""
    tracking_uri = f"sqlite:///{store}/mlflow.db"
    for version in range(1, VERSIONS + 1):
        model = resolve_model(f"models:/small/{version}", tracking_uri=tracking_uri)
        if version > VERSIONS // 2:
            model = resolve_model(f"file://{model.location}", tracking_uri=tracking_uri)
        service.ServingModel(model, service.predictor_for(model)).predict_rides(RIDES)
    assert left_behind(elsewhere) == (0, 0)


@pytest.fixture(scope="module")
def s3(store, tmp_path_factory) -> Iterator[tuple[list[str], Path]]:
    """The twenty versions' folders on a moto S3 server: their s3:// locations, and the log
    of the server, which has a line for each request."""
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    folders = sorted(
        (p.parent for p in (store / "mlruns").rglob("MLmodel")), key=lambda p: p.stat().st_mtime
    )
    assert len(folders) == VERSIONS
    with moto_s3(log):
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        locations = []
        for number, folder in enumerate(folders):
            for path in folder.rglob("*"):
                if path.is_file():
                    key = f"m{number:02d}/{path.relative_to(folder)}"
                    client.upload_file(str(path), BUCKET, key)
            locations.append(f"s3://{BUCKET}/m{number:02d}")
        yield locations, log


def test_twenty_loads_from_s3_fetch_each_file_once_and_leave_nothing(s3, elsewhere):
    locations, log = s3
    for location in locations:
        model = resolve_model(location, (f"s3://{BUCKET}/",))
        service.ServingModel(model, service.predictor_for(model)).predict_rides(RIDES)
    assert left_behind(elsewhere) == (0, 0)
    fetched = re.findall(rf'"GET /{BUCKET}/(m\d\d/[^ ?]+)', log.read_text())
    assert len(fetched) == len(set(fetched)), sorted(fetched)
    assert {key.split("/", 1)[1] for key in fetched} == {"MLmodel", "model.pkl"}
