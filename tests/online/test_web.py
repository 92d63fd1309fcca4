"""The web service's app through Flask's test client, with a small real model (`online.web`)."""

from __future__ import annotations

import json
import logging

import pytest

from ride_duration.core.errors import ModelNotFoundError
from ride_duration.data.rides import rides_table
from ride_duration.model.predictors import make_predictor
from ride_duration.model.service import ServingModel
from ride_duration.online import web
from tests.support.rides import MODEL, RIDE
from tests.support.troubleshooting import assert_documented


class CountingPredictor:
    """A real predictor that counts its calls: a batch must be one vectorised call."""

    def __init__(self, predictor) -> None:
        self.predictor = predictor
        self.features = predictor.features
        self.calls: list[int] = []

    def predict_checked(self, rides):
        self.calls.append(len(rides.kept))
        return self.predictor.predict_checked(rides)


@pytest.fixture
def predictor(pipeline) -> CountingPredictor:
    return CountingPredictor(make_predictor(pipeline))


@pytest.fixture
def client(predictor):
    app = web.create_app(web.Loaded(ServingModel(MODEL, predictor)), max_batch=5)
    return app.test_client()


def expected(pipeline, rides: list[dict]) -> list[float]:
    table = rides_table(rides)
    return make_predictor(pipeline).predict(table).tolist()


def test_the_course_payload_gets_a_duration_and_the_model_version(client, pipeline):
    response = client.post("/predict", json=RIDE)
    assert response.status_code == 200
    assert response.get_json() == {
        "duration": round(expected(pipeline, [RIDE])[0], 2),
        "ride_id": None,
        "model_version": "ride-duration/3",
        "run_id": "abc123",
    }


@pytest.mark.parametrize("ride_id", [156, "ride-156", 156.0, None])
def test_a_ride_id_is_echoed(client, ride_id):
    answer = client.post("/predict", json={**RIDE, "ride_id": ride_id}).get_json()
    assert answer["ride_id"] == (156 if ride_id == 156.0 else ride_id)


def test_a_batch_is_predicted_in_order_in_one_call(client, predictor, pipeline):
    rides = [{**RIDE, "trip_distance": d, "ride_id": i} for i, d in enumerate([0.5, 9, 2, 3.66])]
    response = client.post("/predict/batch", json={"rides": rides})
    assert response.status_code == 200
    body = response.get_json()
    assert [p["ride_id"] for p in body["predictions"]] == [0, 1, 2, 3]
    assert [p["duration"] for p in body["predictions"]] == [
        round(value, 2) for value in expected(pipeline, rides)
    ]
    assert body["model_version"] == "ride-duration/3"
    assert predictor.calls == [4]  # one vectorised call


@pytest.mark.parametrize(
    ("path", "body", "content_type", "status", "field", "says"),
    [
        ("/predict", b"PULocationID=130", "application/x-www-form-urlencoded", 415, None, "JSON"),
        ("/predict", b"{not json", "application/json", 400, None, "not valid JSON"),
        ("/predict", b"[1, 2]", "application/json", 400, None, "JSON object"),
        (
            "/predict",
            {"DOLocationID": 205, "trip_distance": 3.66},
            None,
            400,
            "PULocationID",
            "missing",
        ),
        ("/predict", {**RIDE, "PULocationID": "abc"}, None, 400, "PULocationID", "whole number"),
        ("/predict", {**RIDE, "PULocationID": 13.5}, None, 400, "PULocationID", "whole number"),
        ("/predict", {**RIDE, "DOLocationID": True}, None, 400, "DOLocationID", "whole number"),
        ("/predict", {**RIDE, "trip_distance": -2}, None, 400, "trip_distance", "0 or more"),
        ("/predict", {**RIDE, "trip_distance": "far"}, None, 400, "trip_distance", "number"),
        ("/predict", {**RIDE, "trip_distance": None}, None, 400, "trip_distance", "finite"),
        (
            "/predict",
            b'{"PULocationID": 1, "DOLocationID": 2, "trip_distance": NaN}',
            "application/json",
            400,
            "trip_distance",
            "finite",
        ),
        (
            "/predict",
            b'{"PULocationID": 1, "DOLocationID": 2, "trip_distance": Infinity}',
            "application/json",
            400,
            "trip_distance",
            "finite",
        ),
        ("/predict", {**RIDE, "ride_id": [1]}, None, 400, "ride_id", "string or a whole number"),
        ("/predict/batch", {"rides": "all"}, None, 400, "rides", "rides"),
        ("/predict/batch", {}, None, 400, "rides", "rides"),
        ("/predict/batch", {"rides": [RIDE] * 6}, None, 413, "rides", "at most 5 rides"),
        (
            "/predict/batch",
            {"rides": [RIDE, {**RIDE, "trip_distance": -1}]},
            None,
            400,
            "rides[1].trip_distance",
            "0 or more",
        ),
        ("/predict/batch", {"rides": [RIDE, 7]}, None, 400, "rides[1]", "an object"),
        (
            "/predict/batch",
            {"rides": [{**RIDE, "ride_id": {}}]},
            None,
            400,
            "rides[0].ride_id",
            "ride_id",
        ),
        ("/predict", b"x" * (web.MAX_BODY_BYTES + 1), "application/json", 413, None, "large"),
        ("/predict", {**RIDE, "trip_distance": 1e39}, None, 400, "trip_distance", "finite"),
        ("/predict", {**RIDE, "trip_distance": 1e308}, None, 400, "trip_distance", "finite"),
        (
            "/predict/batch",
            {"rides": [RIDE, {**RIDE, "trip_distance": 1e39}, RIDE]},
            None,
            400,
            "rides[1].trip_distance",
            "finite",
        ),
        ("/predict", {**RIDE, "PULocationID": "nan"}, None, 400, "PULocationID", "whole number"),
        (
            "/predict",
            b'{"PULocationID": NaN, "DOLocationID": 2, "trip_distance": 1}',
            "application/json",
            400,
            "PULocationID",
            "whole number",
        ),
        ("/predict", b"[" * 100_000, "application/json", 400, None, "nested too deeply"),
        ("/predict", b'{"a": ' * 100_000, "application/json", 400, None, "nested too deeply"),
        ("/predict", {**RIDE, "ride_id": ""}, None, 400, "ride_id", "1 to 256 characters"),
        ("/predict", {**RIDE, "ride_id": "r" * 257}, None, 400, "ride_id", "1 to 256 characters"),
        (
            "/predict",
            b'{"PULocationID": 1, "DOLocationID": 2, "trip_distance": 1, "ride_id": 1'
            + b"0" * 300
            + b"}",
            "application/json",
            400,
            "ride_id",
            "1 to 256 characters",
        ),
        (
            "/predict",
            {**RIDE, "trip_distance": "x" * 500_000},
            None,
            400,
            "trip_distance",
            "...",  # the value is shown cut short
        ),
    ],
)
def test_a_bad_request_gets_a_4xx_json_error_naming_the_field(
    client, path, body, content_type, status, field, says
):
    if isinstance(body, bytes):
        response = client.post(path, data=body, content_type=content_type)
    else:
        response = client.post(path, json=body)
    assert response.status_code == status
    answer = response.get_json()
    assert set(answer) == {"error", "field"}
    assert answer["field"] == field
    assert says in answer["error"]
    assert len(answer["error"]) < 300  # whatever the value, the line stays short
    assert "Traceback" not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("method", "path", "status"), [("GET", "/predict", 405), ("GET", "/x", 404)]
)
def test_unknown_routes_and_methods_answer_json(client, method, path, status):
    response = client.open(path, method=method)
    assert response.status_code == status
    assert set(response.get_json()) == {"error", "field"}


def test_unknown_fields_are_ignored(client, pipeline):
    answer = client.post("/predict", json={**RIDE, "vendor": 2, "note": "x"}).get_json()
    assert answer["duration"] == round(expected(pipeline, [RIDE])[0], 2)


@pytest.mark.parametrize("path", ["/ready", "/ping"])
def test_ready_says_the_model_version(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ready",
        "model_version": "ride-duration/3",
        "run_id": "abc123",
    }
    assert client.get("/health").get_json() == {"status": "alive"}


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/predict", RIDE, 200),
        ("POST", "/predict", {**RIDE, "trip_distance": -1}, 400),
        ("POST", "/predict/batch", {"rides": [RIDE] * 6}, 413),
        ("GET", "/predict", None, 405),
        ("GET", "/nowhere", None, 404),
        ("GET", "/ready", None, 200),
        ("GET", "/health", None, 200),
        ("GET", "/metrics", None, 200),
    ],
)
def test_every_answer_names_the_model_version_in_a_header(client, method, path, body, status):
    response = client.open(path, method=method, json=body)
    assert response.status_code == status
    assert response.headers["X-Model-Version"] == "ride-duration/3"


def test_draining_makes_ready_answer_503_while_predictions_go_on(client):
    service = web.service_of(client.application)
    assert service is not None
    service.draining.set()  # what the worker does on SIGTERM
    for path in ("/ready", "/ping"):
        response = client.get(path)
        assert response.status_code == 503
        assert response.get_json() == {
            "status": "draining",
            "model_version": "ride-duration/3",
            "run_id": "abc123",
        }
        assert response.headers["X-Model-Version"] == "ride-duration/3"
    assert client.post("/predict", json=RIDE).status_code == 200
    assert client.get("/health").status_code == 200


def test_a_service_is_found_only_on_the_apps_create_app_makes(client):
    assert web.service_of(client.application) is not None
    assert web.service_of(object()) is None
    assert web.service_of(lambda environ, start_response: []) is None


def test_a_model_that_failed_to_load_makes_ready_and_predict_say_so():
    def fails() -> ServingModel:
        raise ModelNotFoundError("cannot find model models:/ride-duration@nope: no alias")

    app = web.create_app(web.load(fails))
    client = app.test_client()
    assert client.get("/health").status_code == 200
    ready = client.get("/ready")
    assert ready.status_code == 503
    assert ready.get_json()["error"] == "cannot find model models:/ride-duration@nope: no alias"
    answer = client.post("/predict", json=RIDE)
    assert answer.status_code == 503
    assert "the model is not loaded" in answer.get_json()["error"]
    # no model, no version to name: the header is left out, not sent empty
    assert "X-Model-Version" not in answer.headers
    assert "X-Model-Version" not in ready.headers


def test_an_unexpected_failure_is_a_500_json_without_a_traceback(pipeline):
    class Broken:
        features = make_predictor(pipeline).features

        def predict(self, trips):
            raise RuntimeError("secret internals")

    client = web.create_app(web.Loaded(ServingModel(MODEL, Broken()))).test_client()
    response = client.post("/predict", json=RIDE)
    assert response.status_code == 500
    assert response.get_json() == {"error": "internal error", "field": None}


def test_each_request_logs_one_json_line(client, caplog):
    with caplog.at_level(logging.INFO, logger="ride_duration.online.web"):
        client.post("/predict/batch", json={"rides": [RIDE, RIDE]})
    [line] = [r.getMessage() for r in caplog.records if r.name == "ride_duration.online.web"]
    entry = json.loads(line)
    assert entry["status"] == 200
    assert entry["rides"] == 2
    assert entry["model_version"] == "ride-duration/3"
    assert entry["latency_ms"] > 0
    assert len(entry["request_id"]) == 32  # made: the client sent none
    assert (entry["method"], entry["path"]) == ("POST", "/predict/batch")


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("WEB_WORKERS", "abc", "error: WEB_WORKERS must be a whole number, got 'abc'"),
        ("WEB_THREADS", "0", "error: WEB_THREADS must be at least 1, got 0"),
        ("WEB_TIMEOUT_SECONDS", "soon", "error: WEB_TIMEOUT_SECONDS must be a whole number"),
        ("WEB_DRAIN_SECONDS", "-1", "error: WEB_DRAIN_SECONDS must be at least 0, got -1"),
        (
            "PROMETHEUS_MULTIPROC_DIR",
            "/dev/null/metrics",
            "error: PROMETHEUS_MULTIPROC_DIR /dev/null/metrics cannot hold the metrics (Not a "
            "directory): point it at a folder the service can write, or unset it for a "
            "temporary one",
        ),
    ],
)
def test_a_bad_web_setting_stops_gunicorn_with_one_line(variable, value, says):
    """gunicorn reads gunicorn.conf.py first: a bad WEB_* variable is one line and exit 2,
    not gunicorn's "Failed to read config file" and a traceback."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.conftest import REPO

    result = subprocess.run(
        [str(Path(sys.executable).parent / "gunicorn"), "--check-config", "predict:app"],
        cwd=REPO,
        env={**os.environ, variable: value},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith(says)
    assert len(result.stderr.strip().splitlines()) == 1
    if variable == "PROMETHEUS_MULTIPROC_DIR":  # new with the metrics: its troubleshooting row
        assert_documented(result.stderr.strip())
    assert "Traceback" not in result.stdout + result.stderr
