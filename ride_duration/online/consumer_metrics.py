"""The stream consumer's Prometheus metrics: records by outcome, throttles, lag, the model served.

They live in a registry of their own (not prometheus_client's global one), so that tests, the
Lambda function and anything else in the process keep theirs apart; `stream.py` serves it on
`/metrics` of STREAM_METRICS_PORT. Every delivery of a record counts: a record read again for a
retry is read, and scored or failed, once more each time (so read = scored + failed, always),
and dead-lettered once, when it is kept aside. The summary line at the end counts each record
once, by its last outcome.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from ride_duration.core.errors import ConfigurationError
from ride_duration.model.refresh import COUNTED_OUTCOMES, Outcome
from ride_duration.model.service import ServingModel

PREFIX = "ride_duration_stream"


class ConsumerMetrics:
    """The counters and gauges of one consumer, in `registry`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()

        def counter(name: str, text: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(f"{PREFIX}_{name}", text, labels, registry=self.registry)

        self.read = counter("records_read", "Records handed to the handler, each delivery")
        self.scored = counter("records_scored", "Records the handler scored, each delivery")
        self.failed = counter("records_failed", "Records the handler reported failed")
        self.dead_lettered = counter(
            "records_dead_lettered", "Records kept in the dead-letter file, their retries spent"
        )
        self.throttled = counter(
            "kinesis_throttled", "Kinesis calls answered as throttled", ("api", "code")
        )
        self.behind = Gauge(
            f"{PREFIX}_millis_behind_latest",
            "How far the shard's last read is from its newest record (GetRecords' answer)",
            ("shard",),
            registry=self.registry,
        )
        self.model = Gauge(
            f"{PREFIX}_model_info",
            "The model version the consumer scores with (1)",
            ("model_version", "run_id"),  # as the web service labels its own
            registry=self.registry,
        )
        self.refreshes = counter(
            "model_refreshes",
            "Looks at the model's alias (MODEL_REFRESH_SECONDS), by outcome: switched to a new "
            "version, refused one that failed to load or check, or could not look it up",
            ("outcome",),
        )
        for outcome in COUNTED_OUTCOMES:
            self.refreshes.labels(outcome=outcome)

    def serving(self, version: str, run_id: str | None) -> None:
        """The model the consumer scores with."""
        self.model.clear()
        self.model.labels(model_version=version, run_id=run_id or "").set(1)

    def refreshed(self, outcome: Outcome, before: ServingModel, after: ServingModel) -> None:
        """Count a look at the alias; after a switch, name the new model."""
        self.refreshes.labels(outcome=outcome).inc()
        if outcome == "switched":
            self.serving(after.version, after.ref.run_id)

    def on_throttle(self, api: str, code: str) -> None:
        """Count a throttled Kinesis answer."""
        self.throttled.labels(api=api, code=code).inc()

    def lag(self, shard_id: str, millis: object) -> None:
        """A shard's MillisBehindLatest, when GetRecords said it."""
        if isinstance(millis, int | float):
            self.behind.labels(shard=shard_id).set(millis)

    def finished(self, shard_id: str) -> None:
        """A shard read to its end: no more lag of it."""
        self.behind.remove(shard_id)  # a shard it has no value of is left as it is

    def value(self, name: str, **labels: str) -> float | None:
        """The value of metric sample `name` (with the prefix, without it) and `labels`."""
        full = name if name.startswith(PREFIX) else f"{PREFIX}_{name}"
        return self.registry.get_sample_value(full, labels)

    def serve(self, port: int, address: str) -> Any:
        """Serve `/metrics` on `address`:`port` in a thread; the server (`shutdown` it)."""
        try:
            server, _ = start_http_server(port, addr=address, registry=self.registry)
        except OSError as error:
            raise ConfigurationError(
                f"cannot serve the consumer's metrics on {address}:{port} "
                f"({error.strerror or error}): free the port, or set STREAM_METRICS_PORT to "
                "another"
            ) from None
        return server
