"""The consumer's metrics (`ride_duration.online.consumer_metrics`) after a run: records read,
scored, failed and dead-lettered, each shard's MillisBehindLatest, the model served, and
`/metrics` served from a registry of their own."""

from __future__ import annotations

import socket
import urllib.request

import pytest
from prometheus_client import REGISTRY

from ride_duration.core.errors import ConfigurationError
from ride_duration.online.consumer import Tally
from ride_duration.online.consumer_metrics import ConsumerMetrics
from tests.online.test_consumer import FakeKinesis, Handler, consume, resharded, ten_rides


@pytest.fixture
def kinesis() -> FakeKinesis:
    """test_consumer.py's stream: ten records on two shards."""
    return ten_rides()


@pytest.mark.parametrize(
    ("fail", "raises", "max_retries", "counts"),
    [
        ({}, 0, 2, (10, 10, 0, 0)),
        ({"ride-4": 99}, 0, 0, (10, 9, 1, 1)),  # no retry: each record read once
        # ride-4 (shard-0's third record, batches of 3) read three times, with the records
        # after it in its batch: shard-0 delivers 3 + 3 + 3 records, shard-1 3 + 2
        ({"ride-4": 99}, 0, 2, (14, 11, 3, 1)),
        ({"ride-4": 1}, 0, 2, (11, 10, 1, 0)),  # failed once, scored on its retry
        ({}, 99, 0, (10, 0, 10, 10)),  # a handler that fails: every record kept aside
    ],
)
def test_the_counts_are_each_delivery_of_a_record_by_its_outcome(
    kinesis, tmp_path, fail, raises, max_retries, counts
):
    metrics, tally = ConsumerMetrics(), Tally()
    consume(
        kinesis,
        Handler(fail, raises),
        tmp_path,
        max_retries=max_retries,
        metrics=metrics,
        tally=tally,
    )
    names = ("records_read_total", "records_scored_total", "records_failed_total")
    found = tuple(metrics.value(name) for name in (*names, "records_dead_lettered_total"))
    assert found == counts
    read, scored, failed, dead = counts
    assert read == scored + failed  # every delivery, one outcome
    assert dead == tally.dead_lettered  # kept aside once, as the summary says


def test_each_shard_has_its_millis_behind_latest(kinesis, tmp_path):
    kinesis.lag = {"shard-0": 0, "shard-1": 86_400_000}
    metrics = ConsumerMetrics()
    consume(kinesis, Handler(), tmp_path, metrics=metrics)
    assert metrics.value("millis_behind_latest", shard="shard-0") == 0
    assert metrics.value("millis_behind_latest", shard="shard-1") == 86_400_000


def test_a_shard_read_to_its_end_has_no_lag_left(tmp_path):
    stream = resharded()
    stream.lag = dict.fromkeys(stream.shards, 5)
    metrics = ConsumerMetrics()
    consume(stream, Handler(), tmp_path, metrics=metrics)
    for finished in ("parent-a", "parent-b", "split-2"):
        assert metrics.value("millis_behind_latest", shard=finished) is None
    assert metrics.value("millis_behind_latest", shard="split-1") == 5


def test_the_model_served_is_one_labelled_gauge():
    metrics = ConsumerMetrics()
    metrics.serving("ride-duration/1", "abc123")
    metrics.serving("ride-duration/2", None)  # a consumer serves one model: the last
    assert metrics.value("model_info", model_version="ride-duration/2", run_id="") == 1
    assert metrics.value("model_info", model_version="ride-duration/1", run_id="abc123") is None


def test_each_consumer_has_a_registry_of_its_own():
    first, second = ConsumerMetrics(), ConsumerMetrics()  # no "duplicated timeseries"
    first.read.inc(3)
    assert second.value("records_read_total") == 0
    assert REGISTRY.get_sample_value("ride_duration_stream_records_read_total") is None


def test_metrics_are_served_on_a_port_and_a_busy_port_is_one_line():
    metrics = ConsumerMetrics()
    metrics.read.inc(7)
    metrics.on_throttle("GetShardIterator", "LimitExceededException")
    metrics.lag("shardId-000000000000", 1500)
    server = metrics.serve(0, "127.0.0.1")  # port 0: one the system picks
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        assert "ride_duration_stream_records_read_total 7.0" in text
        assert (
            'ride_duration_stream_kinesis_throttled_total{api="GetShardIterator",'
            'code="LimitExceededException"} 1.0'
        ) in text
        assert 'ride_duration_stream_millis_behind_latest{shard="shardId-000000000000"} 1500.0' in (
            text
        )
        with pytest.raises(ConfigurationError) as busy:
            ConsumerMetrics().serve(port, "127.0.0.1")
        assert f"cannot serve the consumer's metrics on 127.0.0.1:{port}" in str(busy.value)
        assert "STREAM_METRICS_PORT" in str(busy.value)
    finally:
        server.shutdown()
        server.server_close()
    with socket.socket() as probe:  # closed with the consumer
        assert probe.connect_ex(("127.0.0.1", port)) != 0
