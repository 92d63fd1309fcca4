"""The scorers with a model that is refreshed (`model.refresh`): each web answer and each stream
record names the version that made it, a switch in the middle of a request does not change its
answer, and the metrics count each look; a model that fails its check at start is one line.
The registry is sqlite, its alias moved by the test (`tests.support.moving_alias`); on the real
gunicorn and consumer, see tests/integration/test_refresh.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ride_duration.model import service
from ride_duration.model.refresh import ModelRefresher
from ride_duration.model.service import ServingModel
from ride_duration.online import stream, web
from ride_duration.online.consumer_metrics import ConsumerMetrics
from tests.conftest import REPO
from tests.support.failures import assert_one_line_failure
from tests.support.moving_alias import EMPTY, NAN, OTHER, moving_registry
from tests.support.rides import RIDE


@pytest.fixture
def registry(tmp_path):
    return moving_registry(tmp_path)


def minutes_of(settings, version: int) -> float:
    model = service.load(f"models:/ride-duration/{version}", settings)
    return round(float(model.predict_rides([RIDE])[0]), 2)


def scrape(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = client.get("/metrics").get_data(as_text=True)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def refreshes(samples, outcome: str) -> float:
    return samples[("ride_duration_web_model_refreshes_total", (("outcome", outcome),))]


def info(samples, version: str) -> float | None:
    return samples.get(
        (
            "ride_duration_web_model_info",
            (("model_version", version), ("run_id", f"run{version[-1]}")),
        )
    )


def app_of(settings):
    model = service.load(settings.default_model_uri, settings)
    refresher = ModelRefresher(model, settings)
    return web.create_app(web.Loaded(model), refresher=refresher), refresher


@pytest.mark.parametrize(
    ("moved_to", "outcome", "answers"),
    [
        (OTHER, "switched", "ride-duration/2"),
        (EMPTY, "refused", "ride-duration/1"),
        (NAN, "refused", "ride-duration/1"),
        (None, "lookup_failed", "ride-duration/1"),
    ],
)
def test_after_a_look_the_web_answers_with_the_version_serving_and_counts_it(
    registry, moved_to, outcome, answers
):
    settings, move = registry
    expected = minutes_of(settings, int(answers[-1]))  # while the store is there
    app, refresher = app_of(settings)
    client = app.test_client()
    before = client.post("/predict", json=RIDE)
    assert (
        before.headers[web.MODEL_VERSION_HEADER]
        == before.json["model_version"]
        == "ride-duration/1"
    )
    move(moved_to)
    assert refresher.poll() == outcome
    after = client.post("/predict", json=RIDE)
    assert after.status_code == 200
    assert after.headers[web.MODEL_VERSION_HEADER] == after.json["model_version"] == answers
    assert after.json["duration"] == expected
    assert client.get("/ready").json["model_version"] == answers
    samples = scrape(client)
    assert refreshes(samples, outcome) == 1
    assert sum(refreshes(samples, o) for o in ("switched", "refused", "lookup_failed")) == 1
    assert info(samples, answers) == 1
    assert info(samples, "ride-duration/1") == (1 if answers == "ride-duration/1" else 0)


@dataclass(frozen=True)
class Switching:
    """A predictor that moves the alias and lets the refresher switch while it predicts: the
    request in flight then still has the model it began with."""

    inner: object
    switch: object

    @property
    def path(self) -> str:
        return self.inner.path

    @property
    def features(self):
        return self.inner.features

    def predict_checked(self, checked):
        self.switch()
        return self.inner.predict_checked(checked)


def test_a_switch_during_a_request_leaves_its_answer_to_the_model_it_began_with(registry):
    settings, move = registry
    first = service.load(settings.default_model_uri, settings)
    refresher = ModelRefresher(first, settings)

    def switch() -> None:
        if refresher.model.version == "ride-duration/1":
            move(OTHER)
            assert refresher.poll() == "switched"

    switching = ServingModel(first.ref, Switching(first.predictor, switch))
    refresher.model = switching
    client = web.create_app(web.Loaded(switching), refresher=refresher).test_client()
    during = client.post("/predict", json=RIDE)
    assert (
        during.headers[web.MODEL_VERSION_HEADER]
        == during.json["model_version"]
        == "ride-duration/1"
    )
    assert during.json["duration"] == minutes_of(settings, 1)
    after = client.post("/predict", json=RIDE)
    assert (
        after.headers[web.MODEL_VERSION_HEADER] == after.json["model_version"] == "ride-duration/2"
    )
    assert after.json["duration"] == minutes_of(settings, 2)


def test_the_stream_handler_scores_each_event_with_the_model_serving_then(tmp_path, monkeypatch):
    settings, move = moving_registry(tmp_path, TEST_RUN="True")
    # load_for_serving points MLflow's variable at the store: put back after the test
    monkeypatch.setenv("MLFLOW_TRACKING_URI", settings.tracking_uri)
    refresher, handler = stream.scorer(settings)
    data = json.dumps({"ride": RIDE, "ride_id": 7}).encode()
    event = stream.kinesis_event([data, data])
    assert {p["version"] for p in handler(event)["predictions"]} == {"ride-duration/1"}
    metrics = ConsumerMetrics()
    refresher.listener = metrics.refreshed
    move(OTHER)
    assert refresher.poll() == "switched"
    predictions = handler(event)["predictions"]
    assert {p["version"] for p in predictions} == {"ride-duration/2"}
    assert {p["run_id"] for p in predictions} == {"run2"}
    assert {p["prediction"]["ride_duration"] for p in predictions} == {minutes_of(settings, 2)}
    assert metrics.value("model_refreshes_total", outcome="switched") == 1
    assert metrics.value("model_refreshes_total", outcome="refused") == 0
    assert metrics.value("model_info", model_version="ride-duration/2", run_id="run2") == 1
    assert metrics.value("model_info", model_version="ride-duration/1", run_id="run1") is None


@pytest.mark.parametrize(
    ("command", "stdin"),
    [
        (["-c", "import predict"], ""),  # what gunicorn does first: import the app
        (["lambda_function.py"], '{"ride": {"PULocationID": 1, "trip_distance": 1}}\n'),
    ],
    ids=["web service", "lambda function"],
)
def test_a_model_that_answers_nan_is_refused_at_start_in_one_line(tmp_path, command, stdin):
    settings, _ = moving_registry(tmp_path)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "MODEL_URI": f"models:/ride-duration/{NAN}",
        "TRUSTED_MODEL_PREFIXES": ",".join(settings.trusted_model_prefixes or ()),
        "TEST_RUN": "True",
    }
    result = subprocess.run(
        [sys.executable, *command],
        input=stdin,
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_line_failure(
        result,
        f"error: model ride-duration/{NAN} answers [nan, nan] for 2 check rides, not a finite "
        "number of minutes each: it is not served",
        2,
    )
    assert result.stdout == ""
