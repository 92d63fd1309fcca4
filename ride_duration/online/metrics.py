"""The web service's Prometheus metrics: requests, latency, rides, refused rides, the model served.

One `WebMetrics` per app, written with prometheus_client. Under gunicorn the counts of every
worker add up: gunicorn.conf.py points PROMETHEUS_MULTIPROC_DIR at a fresh folder before the app
(and prometheus_client) is imported, each process writes its counts into its own files there,
and a scrape answered by any worker reads them all (prometheus_client's multiprocess mode).
Without that variable (Flask's development server, the unit tests) a scrape shows this process
alone. Every label takes values from a short fixed list: the app's routes, HTTP statuses, the
ride rules of `data.rules`, the refresh's outcomes, the versions the service has served.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from ride_duration.core.errors import RideError
from ride_duration.data import rules
from ride_duration.model.refresh import COUNTED_OUTCOMES, Outcome
from ride_duration.model.service import ServingModel

CONTENT_TYPE = CONTENT_TYPE_LATEST
MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# A request answered by the worker before the app saw it (408, 413, 431, gunicorn's own 400):
# no route is known.
UNREAD = "unread"
UNMATCHED = "unmatched"  # a path no route takes (404)
# Seconds from the app's first look at a request to its answer: a compiled model answers in a
# millisecond or two, a batch of 1,000 rides in tens.
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
RIDE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
# Why a ride was refused: the field whose rule it broke (`rules.RULES`, and the ride id's rule),
# a field it lacks, or a ride that is no JSON object.
MISSING_FIELD = "missing_field"
NOT_AN_OBJECT = "not_an_object"
RIDE_ID = "ride_id"
REFUSAL_RULES = (*rules.RULES, RIDE_ID, MISSING_FIELD, NOT_AN_OBJECT)


def refusal_rule(error: RideError, rides: Sequence[object]) -> str:
    """The rule a refused ride broke, as the metrics name it: its RideError's field (the rule of
    `rules.RULES` it names), `missing_field` when the ride lacks that field, `not_an_object`
    when the error names no field (the ride is no object)."""
    if error.field is None:
        return NOT_AN_OBJECT
    ride = rides[error.index] if 0 <= error.index < len(rides) else None
    if isinstance(ride, Mapping) and error.field not in ride:
        return MISSING_FIELD
    return error.field


def multiprocess() -> bool:
    """Whether the counts are kept in PROMETHEUS_MULTIPROC_DIR's files, for every process."""
    return bool(os.environ.get(MULTIPROCESS_VARIABLE))


class WebMetrics:
    """The web service's metrics, registered in a registry of their own (one per app: tests
    make many apps in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "ride_duration_web_requests",
            "Requests answered, by endpoint (the route; unread: refused by the worker before "
            "the app read it; unmatched: no route) and HTTP status",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ride_duration_web_request_duration_seconds",
            "Seconds from a request read whole to its answer made, by endpoint",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rides = Histogram(
            "ride_duration_web_rides_per_request",
            "Rides predicted per request answered 200, by endpoint",
            ["endpoint"],
            buckets=RIDE_BUCKETS,
            registry=self.registry,
        )
        self.refused = Counter(
            "ride_duration_web_rides_refused",
            "Rides refused, by the rule they broke (the ride a refused request's 400 names)",
            ["rule"],
            registry=self.registry,
        )
        self.model = Gauge(
            "ride_duration_web_model_info",
            "The model the service answers with: 1, labelled with its version and run id (0 for "
            "one it served before a refresh)",
            ["model_version", "run_id"],
            # The largest of the live workers': one series per version, not one per pid, at 1
            # while any worker answers with it; a worker that exited counts no more.
            multiprocess_mode="livemax",
            registry=self.registry,
        )
        self.refreshes = Counter(
            "ride_duration_web_model_refreshes",
            "Looks at the model's alias (MODEL_REFRESH_SECONDS), by outcome: switched to a new "
            "version, refused one that failed to load or check, or could not look it up",
            ["outcome"],
            registry=self.registry,
        )
        for rule in REFUSAL_RULES:  # every rule shows, at 0 until a ride breaks it
            self.refused.labels(rule)
        for outcome in COUNTED_OUTCOMES:
            self.refreshes.labels(outcome)
        # Each answer's labelled series, kept: prometheus_client checks labels on every call
        # (dicts are safe across the worker's threads: a race only looks a series up twice).
        self._answers: dict[tuple[str, int], Counter] = {}
        self._latencies: dict[str, Histogram] = {}
        self._rides: dict[str, Histogram] = {}

    def serving(self, version: str, run_id: str | None) -> None:
        """Name the model this process serves (as it starts serving)."""
        self.model.labels(version, run_id or "").set(1)

    def refreshed(self, outcome: Outcome, before: ServingModel, after: ServingModel) -> None:
        """Count a look at the alias; after a switch, name the new model (the old one at 0)."""
        self.refreshes.labels(outcome).inc()
        if outcome == "switched":
            self.model.labels(before.version, before.ref.run_id or "").set(0)
            self.serving(after.version, after.ref.run_id)

    def answered(
        self, endpoint: str, status: int, seconds: float | None = None, rides: int | None = None
    ) -> None:
        """Count an answer: its endpoint and status; its latency when the app made it; its rides
        when it predicted them (status 200 of a predict endpoint)."""
        counter = self._answers.get((endpoint, status))
        if counter is None:  # a label set's first answer: found once, then kept
            counter = self._answers[endpoint, status] = self.requests.labels(endpoint, str(status))
        counter.inc()
        if seconds is not None:
            self._child(self._latencies, self.latency, endpoint).observe(seconds)
        if rides is not None and status == 200:
            self._child(self._rides, self.rides, endpoint).observe(rides)

    @staticmethod
    def _child(kept: dict[str, Histogram], histogram: Histogram, endpoint: str) -> Histogram:
        child = kept.get(endpoint)
        if child is None:
            child = kept[endpoint] = histogram.labels(endpoint)
        return child

    def refused_ride(self, rule: str) -> None:
        """Count a ride refused for breaking `rule` (one of REFUSAL_RULES)."""
        self.refused.labels(rule).inc()

    def exposition(self) -> bytes:
        """The scrape: Prometheus' text format, of every process under gunicorn."""
        if not multiprocess():
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # unannotated there
        return generate_latest(registry)
