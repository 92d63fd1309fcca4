"""The web service: rides predicted over HTTP by the serving core, as batch predicts months.

`create_app` builds the Flask app around a model loader (tests hand over a small real model);
`predict.py` is the entry point gunicorn runs. Durations are minutes to two decimals
(`answers.minutes`, as the stream scorer gives them). Every answer names the model version
(`X-Model-Version`, and in the body) and its request's id (`X-Request-ID`: `online.request_ids`),
every bad request gets a 4xx JSON `{"error": ..., "field": ...}`, never a traceback, each
request logs one JSON line (method, path, status, rides, latency, model version, request id)
and is counted in the metrics `GET /metrics` shows (`online.metrics`). Once the worker drains
(`online.worker`, after SIGTERM), `/ready` answers 503 while the rest still answers.

With MODEL_REFRESH_SECONDS set, each process polls the model's alias in a thread of its own
(`model.refresh`), started as a gunicorn worker starts (or at a process's first request): a
request takes the model serving as it begins, and its answer names that version.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, g, jsonify, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from ride_duration.core.errors import RideError, ScoringError
from ride_duration.data import rules
from ride_duration.model.refresh import ModelRefresher
from ride_duration.model.service import ServingModel
from ride_duration.online import request_ids
from ride_duration.online.answers import minutes
from ride_duration.online.metrics import (
    CONTENT_TYPE,
    RIDE_ID,
    UNMATCHED,
    WebMetrics,
    refusal_rule,
)

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20  # a thousand rides fit in well under 1 MiB
MODEL_VERSION_HEADER = "X-Model-Version"
PREDICT_ENDPOINTS = ("/predict", "/predict/batch")
_SERVICE_KEY = "ride_duration"


@dataclass(frozen=True)
class Loaded:
    """The outcome of loading the model: the model, or why it could not be loaded."""

    model: ServingModel | None
    error: str | None = None


def load(loader: Callable[[], ServingModel]) -> Loaded:
    """Run `loader` once; a failure the user can act on becomes the reason /ready gives."""
    try:
        return Loaded(loader())
    except ScoringError as error:
        return Loaded(None, str(error))


@dataclass
class Service:
    """What an app's process shares with its gunicorn worker (`online.worker`): the model (kept
    current by `refresher` when there is one), the metrics, and whether the worker drains (set
    on SIGTERM: /ready then answers 503)."""

    loaded: Loaded
    metrics: WebMetrics
    refresher: ModelRefresher | None = None
    draining: threading.Event = field(default_factory=threading.Event)
    _process: int = field(default=0, init=False)  # the process `in_this_process` ran in
    _starting: threading.Lock = field(default_factory=threading.Lock, init=False)

    @property
    def model(self) -> ServingModel | None:
        """The model serving now: take it once per request."""
        return self.refresher.model if self.refresher is not None else self.loaded.model

    def in_this_process(self, wait_seconds: float = 0.0) -> None:
        """Once per process, as it starts serving: name its model in the metrics and start the
        refresher's thread (threads do not survive gunicorn's fork: each worker starts its
        own), waiting up to `wait_seconds` for its first look, so that a worker started after
        the alias moved serves the new version from its first request."""
        if self._process == os.getpid():
            return
        with self._starting:
            if self._process == os.getpid():
                return
            model = self.model
            if model is not None:
                self.metrics.serving(model.version, model.ref.run_id)
            if self.refresher is not None:
                self.refresher.listener = self.metrics.refreshed
                if self.refresher.start() and wait_seconds > 0:
                    self.refresher.polled.wait(wait_seconds)
            self._process = os.getpid()

    def headers(self, request_id: str, model: ServingModel | None = None) -> dict[str, str]:
        """The headers of every answer: the request's id and the version of `model` (by
        default the one serving), absent when no model is loaded: there is none to name."""
        headers = {request_ids.HEADER: request_id}
        model = model or self.model
        if model is not None:
            headers[MODEL_VERSION_HEADER] = model.version
        return headers


def service_of(app: object) -> Service | None:
    """The Service of an app `create_app` made; None for any other WSGI app."""
    extensions = getattr(app, "extensions", None)
    found = extensions.get(_SERVICE_KEY) if isinstance(extensions, dict) else None
    return found if isinstance(found, Service) else None


class Refused(Exception):
    """A request the service refuses, with its status and the field at fault."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


def create_app(
    loaded: Loaded, *, max_batch: int = 1000, refresher: ModelRefresher | None = None
) -> Flask:
    """The web service around a loaded model (or a failed load, which /ready reports), kept
    current by `refresher` when given."""
    app = Flask("ride_duration")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    assert isinstance(app.json, DefaultJSONProvider)  # Flask's own, which sorts keys by default
    app.json.sort_keys = False
    service = Service(loaded, WebMetrics(), refresher)
    app.extensions[_SERVICE_KEY] = service

    def model() -> ServingModel:
        serving: ServingModel | None = g.model
        if serving is None:
            raise Refused(503, f"the model is not loaded: {loaded.error}")
        return serving

    @app.before_request
    def started() -> None:
        g.started = time.perf_counter()
        g.rides = 0
        g.request_id = request_ids.request_id(request.headers.get(request_ids.HEADER))
        service.in_this_process()
        g.model = service.model  # this request's model, whatever a refresh does meanwhile

    @app.after_request
    def log_request(response: Response) -> Response:
        request_id = g.get("request_id") or request_ids.new()
        serving = g.get("model") or service.model  # the model its before_request took
        for name, value in service.headers(request_id, serving).items():
            response.headers[name] = value
        seconds = time.perf_counter() - g.get("started", time.perf_counter())
        endpoint = request.url_rule.rule if request.url_rule is not None else UNMATCHED
        rides = g.get("rides", 0)
        logger.info(
            json.dumps(
                {
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "rides": rides,
                    "latency_ms": round(seconds * 1000, 3),
                    "model_version": serving.version if serving else None,
                    "request_id": request_id,
                }
            )
        )
        predicted = rides if endpoint in PREDICT_ENDPOINTS else None
        service.metrics.answered(endpoint, response.status_code, seconds, predicted)
        return response

    @app.post("/predict")
    def predict_one() -> Response:
        ride = _json_object()
        ride_id = _ride_id(ride, "ride_id", service.metrics)
        serving = model()
        duration = _predict(serving, [ride], field_prefix="")[0]
        return _answer(serving, {"duration": duration, "ride_id": ride_id})

    @app.post("/predict/batch")
    def predict_many() -> Response:
        body = _json_object()
        rides = body.get("rides")
        if not isinstance(rides, list):
            raise Refused(400, 'send {"rides": [ride, ...]}', "rides")
        if len(rides) > max_batch:
            raise Refused(413, f"at most {max_batch} rides per request, got {len(rides)}", "rides")
        ids = [
            _ride_id(ride, f"rides[{i}].ride_id", service.metrics)
            if isinstance(ride, dict)
            else None
            for i, ride in enumerate(rides)
        ]
        serving = model()
        durations = _predict(serving, rides, field_prefix="rides")
        predictions = [
            {"duration": duration, "ride_id": ride_id}
            for duration, ride_id in zip(durations, ids, strict=True)
        ]
        return _answer(serving, {"predictions": predictions})

    @app.get("/health")
    def health() -> Response:
        return jsonify({"status": "alive"})

    @app.get("/ready")
    @app.get("/ping")
    def ready() -> Response | tuple[Response, int]:
        if g.model is None:
            return jsonify({"status": "not ready", "error": loaded.error}), 503
        if service.draining.is_set():  # SIGTERM: a load balancer sends no more, the rest ends
            return _answer(g.model, {"status": "draining"}), 503
        return _answer(g.model, {"status": "ready"})

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(service.metrics.exposition(), content_type=CONTENT_TYPE)

    @app.errorhandler(Refused)
    def refused(error: Refused) -> tuple[Response, int]:
        return jsonify({"error": str(error), "field": error.field}), error.status

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[Response, int]:
        # Werkzeug's own refusals (404, 405, 413 for a body over MAX_BODY_BYTES) as JSON too.
        assert error.code is not None  # Flask hands a handler only errors with a code
        message = error.description
        if isinstance(error, RequestEntityTooLarge):
            message = f"the body is larger than {MAX_BODY_BYTES:,} bytes: send fewer rides"
        return jsonify({"error": message, "field": None}), error.code

    @app.errorhandler(Exception)
    def failure(error: Exception) -> tuple[Response, int]:
        logger.exception("request %s failed", g.get("request_id"))
        return jsonify({"error": "internal error", "field": None}), 500

    def _predict(serving: ServingModel, rides: Sequence[object], field_prefix: str) -> list[float]:
        g.rides = len(rides)
        try:
            values = serving.predict_rides(rides)
        except RideError as error:
            service.metrics.refused_ride(refusal_rule(error, rides))
            field = error.field if not field_prefix else _indexed(field_prefix, error)
            raise Refused(400, str(error), field) from None
        return minutes(values)

    def _answer(serving: ServingModel, body: dict[str, Any]) -> Response:
        return jsonify({**body, "model_version": serving.version, "run_id": serving.ref.run_id})

    return app


def _json_object() -> dict[str, Any]:
    """The request's JSON object, or a Refused saying what is wrong with the body."""
    if not request.is_json:
        raise Refused(415, "send a JSON object with Content-Type: application/json")
    try:
        body = request.get_json(silent=True)
    except RecursionError:
        raise Refused(400, "the body is nested too deeply") from None
    if body is None:
        raise Refused(400, "the body is not valid JSON")
    if not isinstance(body, dict):
        raise Refused(400, "the body must be a JSON object")
    return body


def _ride_id(ride: dict[str, Any], field: str, metrics: WebMetrics) -> str | int | None:
    """A ride's optional id, echoed back: a string or a whole number."""
    try:
        return rules.ride_id(ride.get("ride_id"))
    except ValueError as error:
        metrics.refused_ride(RIDE_ID)
        raise Refused(400, str(error), field) from None


def _indexed(prefix: str, error: RideError) -> str:
    return f"{prefix}[{error.index}]" + (f".{error.field}" if error.field else "")
