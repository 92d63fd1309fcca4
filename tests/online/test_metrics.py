"""The web service's metrics (`online.metrics`): the rule a refused ride is counted under, and
what a scrape of `/metrics` shows after requests, through Flask's test client.

Added up across gunicorn's workers (PROMETHEUS_MULTIPROC_DIR), they are tested in
tests/integration/test_web_operations.py.
"""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ride_duration.core.errors import RideError
from ride_duration.data.rules import check_rides
from ride_duration.model.predictors import make_predictor
from ride_duration.model.service import ServingModel
from ride_duration.online import web
from ride_duration.online.metrics import REFUSAL_RULES, refusal_rule
from tests.support.rides import MODEL, RIDE


@pytest.mark.parametrize(
    ("ride", "rule"),
    [
        ({**RIDE, "PULocationID": -1}, "PULocationID"),
        ({**RIDE, "PULocationID": "abc"}, "PULocationID"),
        ({**RIDE, "DOLocationID": 1.5}, "DOLocationID"),
        ({**RIDE, "trip_distance": -2}, "trip_distance"),
        ({**RIDE, "trip_distance": None}, "trip_distance"),  # present, but no distance
        ({"DOLocationID": 1, "trip_distance": 1}, "missing_field"),
        ({"PULocationID": 1, "DOLocationID": 1}, "missing_field"),
        (7, "not_an_object"),
        ([RIDE], "not_an_object"),
    ],
)
def test_a_refused_ride_is_counted_under_the_rule_it_broke(ride, rule):
    rides = [RIDE, ride]
    [error] = check_rides(rides).errors
    assert refusal_rule(error, rides) == rule
    assert rule in REFUSAL_RULES


def test_the_rules_are_those_of_the_ride_rules_and_the_ride_id():
    assert REFUSAL_RULES == (
        "PULocationID",
        "DOLocationID",
        "trip_distance",
        "ride_id",
        "missing_field",
        "not_an_object",
    )
    assert refusal_rule(RideError(5, "trip_distance", "x"), []) == "trip_distance"


@pytest.fixture
def client(pipeline):
    return web.create_app(
        web.Loaded(ServingModel(MODEL, make_predictor(pipeline))), max_batch=5
    ).test_client()


def scrape(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_a_scrape_counts_requests_by_endpoint_and_status(client):
    for _ in range(3):
        client.post("/predict", json=RIDE)
    client.post("/predict/batch", json={"rides": [RIDE, RIDE]})
    client.post("/predict", json={**RIDE, "trip_distance": -1})
    client.post("/predict", data=b"x", content_type="text/plain")
    client.get("/ready")
    client.get("/no-such-page")
    samples = scrape(client)
    total = "ride_duration_web_requests_total"
    assert value(samples, total, endpoint="/predict", status="200") == 3
    assert value(samples, total, endpoint="/predict/batch", status="200") == 1
    assert value(samples, total, endpoint="/predict", status="400") == 1
    assert value(samples, total, endpoint="/predict", status="415") == 1
    assert value(samples, total, endpoint="/ready", status="200") == 1
    assert value(samples, total, endpoint="unmatched", status="404") == 1
    # a scrape is counted once answered: the next scrape shows it
    assert value(samples, total, endpoint="/metrics", status="200") == 0
    assert value(scrape(client), total, endpoint="/metrics", status="200") == 1


def test_a_scrape_shows_latency_rides_per_request_and_the_model(client):
    client.post("/predict", json=RIDE)
    client.post("/predict/batch", json={"rides": [RIDE] * 4})
    client.post("/predict/batch", json={"rides": [RIDE, {**RIDE, "trip_distance": -1}]})
    samples = scrape(client)
    latency = "ride_duration_web_request_duration_seconds_count"
    assert value(samples, latency, endpoint="/predict") == 1
    assert value(samples, latency, endpoint="/predict/batch") == 2
    rides = "ride_duration_web_rides_per_request"
    assert value(samples, f"{rides}_count", endpoint="/predict/batch") == 1  # the 200 only
    assert value(samples, f"{rides}_sum", endpoint="/predict/batch") == 4
    assert value(samples, f"{rides}_bucket", endpoint="/predict", le="1.0") == 1
    info = "ride_duration_web_model_info"
    assert value(samples, info, model_version="ride-duration/3", run_id="abc123") == 1


@pytest.mark.parametrize(
    ("path", "body", "rule"),
    [
        ("/predict", {**RIDE, "PULocationID": "x"}, "PULocationID"),
        ("/predict", {**RIDE, "DOLocationID": -3}, "DOLocationID"),
        ("/predict", {**RIDE, "trip_distance": 1e39}, "trip_distance"),
        ("/predict", {**RIDE, "ride_id": ""}, "ride_id"),
        ("/predict", {"PULocationID": 1, "DOLocationID": 2}, "missing_field"),
        ("/predict/batch", {"rides": [RIDE, {**RIDE, "trip_distance": -1}]}, "trip_distance"),
        ("/predict/batch", {"rides": [RIDE, [1, 2]]}, "not_an_object"),
        ("/predict/batch", {"rides": [{**RIDE, "ride_id": [1]}]}, "ride_id"),
    ],
)
def test_a_refused_ride_is_counted_once_under_its_rule(client, path, body, rule):
    assert client.post(path, json=body).status_code == 400
    samples = scrape(client)
    refused = {
        dict(labels)["rule"]: count
        for (name, labels), count in samples.items()
        if name == "ride_duration_web_rides_refused_total"
    }
    assert refused == {name: float(name == rule) for name in REFUSAL_RULES}


def test_a_request_refused_before_its_rides_counts_no_ride(client):
    client.post("/predict/batch", json={"rides": [RIDE] * 6})  # 413: more than max_batch
    client.post("/predict", data=b"{not json", content_type="application/json")
    samples = scrape(client)
    assert not any(
        count for (name, _), count in samples.items() if name.endswith("rides_refused_total")
    )
