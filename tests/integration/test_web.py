"""The web service as it runs: gunicorn started as docs/web.md says, on a model in MLflow on S3.

gunicorn runs from the project folder (so gunicorn.conf.py applies), bound to 127.0.0.1 on a
fresh port, with the session's tracking server and moto S3; each test stops what it started.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mlflow
import mlflow.sklearn
import numpy as np
import pytest

from tests.conftest import REPO
from tests.integration.conftest import Services, Trained
from tests.servers import free_port, http_ok, stop, wait_until_ready
from tests.test_service import as_rides, prepared

BIN = Path(sys.executable).parent
COURSE_RIDE = {"PULocationID": 130, "DOLocationID": 205, "trip_distance": 3.66}


@dataclass(frozen=True)
class Web:
    """A running web service and its log."""

    url: str
    log: Path

    def call(self, path: str, body: object = None) -> tuple[int, dict]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            headers={"Content-Type": "application/json"},
            method="GET" if data is None else "POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)


def _command(port: int) -> list[str]:
    """The documented command, on a fresh port of 127.0.0.1."""
    return [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "predict:app"]


@contextmanager
def serving(env: dict[str, str], log: Path) -> Iterator[Web]:
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            _command(port),
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_ready(http_ok(f"http://127.0.0.1:{port}/ready"), process, 120, log)
        yield Web(f"http://127.0.0.1:{port}", log)
    finally:
        stop(process)


def _download_uri(services: Services, trained: Trained) -> str:
    mlflow.set_tracking_uri(services.tracking_uri)
    return mlflow.MlflowClient().get_model_version_download_uri("ride-duration", trained.version)


@pytest.fixture(scope="module")
def web(services: Services, trained: Trained, tmp_path_factory) -> Iterator[Web]:
    log = tmp_path_factory.mktemp("web") / "gunicorn.log"
    env = {**services.env, "MODEL_URI": "models:/ride-duration@production"}
    with serving(env, log) as running:
        yield running


def test_ready_names_the_version_the_alias_pointed_to(web: Web, trained: Trained):
    assert web.call("/ready") == (
        200,
        {
            "status": "ready",
            "model_version": f"ride-duration/{trained.version}",
            "run_id": trained.run_id,
        },
    )
    assert web.call("/health") == (200, {"status": "alive"})


def test_the_course_payload_answers_what_batch_scoring_gives(web: Web, trained, batch_path):
    status, answer = web.call("/predict", COURSE_RIDE)
    assert status == 200
    assert answer["model_version"] == f"ride-duration/{trained.version}"
    assert answer["run_id"] == trained.run_id
    assert answer["duration"] == batch_path([COURSE_RIDE])[0]  # bit for bit


def test_a_batch_of_rides_answers_in_order(web: Web, batch_path):
    rides = as_rides(prepared(2021, 3, 400).slice(0, 300))
    status, answer = web.call("/predict/batch", {"rides": rides})
    assert status == 200
    durations = [p["duration"] for p in answer["predictions"]]
    assert np.array(durations).tobytes() == batch_path(rides).tobytes()


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/predict", {"DOLocationID": 205, "trip_distance": 3.66}, 400, "PULocationID"),
        ("/predict", {**COURSE_RIDE, "trip_distance": -1}, 400, "trip_distance"),
        ("/predict", [COURSE_RIDE], 400, None),
        ("/predict/batch", {"rides": [COURSE_RIDE] * 1001}, 413, "rides"),
    ],
)
def test_bad_requests_get_json_errors_over_http(web: Web, path, body, status, field):
    code, answer = web.call(path, body)
    assert (code, answer["field"]) == (status, field)


def test_eight_clients_get_two_thousand_correct_answers(web: Web, batch_path):
    rides = as_rides(prepared(2021, 4, 300).slice(0, 250))
    expected = batch_path(rides)

    def ask(i: int) -> tuple[int, float, float]:
        status, answer = web.call("/predict", {**rides[i % len(rides)], "ride_id": i})
        assert answer["ride_id"] == i
        return status, answer["duration"], expected[i % len(rides)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(ask, range(2_000)))
    assert {status for status, _, _ in results} == {200}
    assert [r[1] for r in results] == [r[2] for r in results]
    lines = [line for line in web.log.read_text().splitlines() if '"path": "/predict"' in line]
    assert len(lines) >= 2_000  # one structured line per request


def test_with_the_tracking_server_down_it_serves_model_location(
    services: Services, trained: Trained, tmp_path: Path, batch_path
):
    env = {
        **services.env,
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",  # nothing listens there
        "MODEL_LOCATION": _download_uri(services, trained),
        "TRUSTED_MODEL_PREFIXES": "models:/,runs:/,s3://mlflow-artifacts/",
    }
    with serving(env, tmp_path / "gunicorn.log") as web:
        status, answer = web.call("/predict", COURSE_RIDE)
    assert status == 200
    assert answer["run_id"] == trained.run_id
    assert answer["model_version"] == trained.run_id  # no registry: the run names the model
    assert answer["duration"] == batch_path([COURSE_RIDE])[0]  # bit for bit
    log = (tmp_path / "gunicorn.log").read_text()
    assert "did not answer" in log
    assert "loading MODEL_LOCATION" in log


def test_with_no_model_reachable_it_exits_with_one_line(services: Services, tmp_path: Path):
    env = {**services.env, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"}
    result = subprocess.run(
        _command(free_port()), env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: MLflow tracking server {env['MLFLOW_TRACKING_URI']} did not answer: start it or "
        "set MLFLOW_TRACKING_URI, or set MODEL_LOCATION to the model's artifact location"
    ]
    assert "Traceback" not in result.stderr
