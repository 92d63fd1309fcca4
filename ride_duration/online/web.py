"""The web service: rides predicted over HTTP by the serving core, as batch predicts months.

`create_app` builds the Flask app around a model loader (tests hand over a small real model);
`predict.py` is the entry point gunicorn runs. Durations are minutes to two decimals
(`answers.minutes`, as the stream scorer gives them). Every answer names the model version,
every bad request gets a 4xx JSON `{"error": ..., "field": ...}`, never a traceback, and each
request logs one JSON line: method, path, status, rides, latency and model version.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, g, jsonify, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from ride_duration.core.errors import RideError, ScoringError
from ride_duration.data import rules
from ride_duration.model.service import ServingModel
from ride_duration.online.answers import minutes

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20  # a thousand rides fit in well under 1 MiB


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


class Refused(Exception):
    """A request the service refuses, with its status and the field at fault."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


def create_app(loaded: Loaded, *, max_batch: int = 1000) -> Flask:
    """The web service around a loaded model (or a failed load, which /ready reports)."""
    app = Flask("ride_duration")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    assert isinstance(app.json, DefaultJSONProvider)  # Flask's own, which sorts keys by default
    app.json.sort_keys = False

    def model() -> ServingModel:
        if loaded.model is None:
            raise Refused(503, f"the model is not loaded: {loaded.error}")
        return loaded.model

    @app.before_request
    def started() -> None:
        g.started = time.perf_counter()
        g.rides = 0

    @app.after_request
    def log_request(response: Response) -> Response:
        logger.info(
            json.dumps(
                {
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "rides": g.get("rides", 0),
                    "latency_ms": round((time.perf_counter() - g.get("started", 0)) * 1000, 3),
                    "model_version": loaded.model.version if loaded.model else None,
                }
            )
        )
        return response

    @app.post("/predict")
    def predict_one() -> Response:
        ride = _json_object()
        ride_id = _ride_id(ride, "ride_id")
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
            _ride_id(ride, f"rides[{i}].ride_id") if isinstance(ride, dict) else None
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
        if loaded.model is None:
            return jsonify({"status": "not ready", "error": loaded.error}), 503
        return _answer(loaded.model, {"status": "ready"})

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
        logger.exception("request failed")
        return jsonify({"error": "internal error", "field": None}), 500

    def _predict(serving: ServingModel, rides: Sequence[object], field_prefix: str) -> list[float]:
        g.rides = len(rides)
        try:
            values = serving.predict_rides(rides)
        except RideError as error:
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


def _ride_id(ride: dict[str, Any], field: str) -> str | int | None:
    """A ride's optional id, echoed back: a string or a whole number."""
    try:
        return rules.ride_id(ride.get("ride_id"))
    except ValueError as error:
        raise Refused(400, str(error), field) from None


def _indexed(prefix: str, error: RideError) -> str:
    return f"{prefix}[{error.index}]" + (f".{error.field}" if error.field else "")
