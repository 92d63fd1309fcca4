"""The consumer under throttling: every Kinesis call it makes (the handler's PutRecords too)
answered LimitExceededException or ProvisionedThroughputExceededException a few times, then
answering. Nothing is lost, each throttle is counted by API and code, each episode is one line,
and the pauses (`throttling.Backoff`, full jitter) are taken on a fake clock: no real waiting."""

from __future__ import annotations

import base64
import json
import logging
import threading

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from prometheus_client import generate_latest

from ride_duration.online.checkpoint import Checkpoint
from ride_duration.online.consumer import Consumer
from ride_duration.online.consumer_metrics import ConsumerMetrics
from ride_duration.online.sink import KinesisSink, Prediction
from ride_duration.online.throttling import Backoff, RetryingKinesis
from tests.online.test_consumer import FakeKinesis

CODES = ["LimitExceededException", "ProvisionedThroughputExceededException"]
RIDES = sorted(f"ride-{i}" for i in range(10))


def client_error(code: str, api: str, status: int = 400) -> ClientError:
    answer = {"Error": {"Code": code, "Message": "Rate exceeded"}}
    return ClientError({**answer, "ResponseMetadata": {"HTTPStatusCode": status}}, api)


class ThrottlingKinesis(FakeKinesis):
    """The fake stream, with an API that fails `times` times (on one shard, if given) first."""

    def __init__(self, api: str, error: Exception, times: int, shard: str | None = None) -> None:
        super().__init__()
        self.api, self.error, self.times, self.shard = api, error, times, shard
        self.calls: dict[str, int] = {}
        for shard_id in ("shard-0", "shard-1"):
            self.add_shard(shard_id)
        for i in range(10):
            self.put(f"shard-{i % 2}", f"ride-{i}")

    def _answer(self, api: str, shard: str | None = None) -> bool:
        """Whether this call of `api` answers (else it raises, or its entries are refused)."""
        self.calls[api] = self.calls.get(api, 0) + 1
        if api != self.api or not self.times or self.shard not in (None, shard):
            return True
        self.times -= 1
        if api == "PutRecords (entries)":
            return False
        raise self.error

    def describe_stream(self, **kwargs) -> dict:
        self._answer("DescribeStream")
        return super().describe_stream(**kwargs)

    def list_shards(self, **kwargs) -> dict:
        self._answer("ListShards")
        return super().list_shards(**kwargs)

    def get_shard_iterator(self, **kwargs) -> dict:
        self._answer("GetShardIterator", kwargs["ShardId"])
        return super().get_shard_iterator(**kwargs)

    def get_records(self, **kwargs) -> dict:
        self._answer("GetRecords", kwargs["ShardIterator"].split("|")[0])
        return super().get_records(**kwargs)

    def put_records(self, **kwargs) -> dict:
        self._answer("PutRecords")
        if not self._answer("PutRecords (entries)"):
            refused = {"ErrorCode": self.error.response["Error"]["Code"], "ErrorMessage": "Rate"}
            records = kwargs["Records"]
            return {"FailedRecordCount": len(records), "Records": [refused] * len(records)}
        return super().put_records(**kwargs)


class FakeTime:
    """A clock that moves only when waited on: the pauses, without waiting."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []
        self.stop_after: int | None = None  # set `stop` at this wait
        self.stop = threading.Event()

    def clock(self) -> float:
        return self.now

    def wait(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds
        if self.stop_after is not None and len(self.waits) >= self.stop_after:
            self.stop.set()


def writing(client) -> object:
    """A handler that writes each record's ride through a Kinesis sink on `client`."""
    sink = KinesisSink(client, "ride_predictions", sleep=pytest.fail)  # no pause of its own

    def handle(event: dict) -> dict:
        predictions = [
            Prediction(
                r["kinesis"]["sequenceNumber"],
                r["kinesis"]["partitionKey"],
                {"ride": base64.b64decode(r["kinesis"]["data"]).decode()},
            )
            for r in event["Records"]
        ]
        return {"batchItemFailures": [{"itemIdentifier": s} for s in sink.write(predictions)]}

    return handle


def consume(kinesis: FakeKinesis, tmp_path, time: FakeTime) -> ConsumerMetrics:
    """Run a consumer over `kinesis` as `stream.py` makes one, on fake time; its metrics."""
    metrics = ConsumerMetrics()
    backoff = Backoff(draw=lambda: 1.0)  # the ceiling itself: the pauses are known
    client = RetryingKinesis(
        kinesis, stop=time.stop, on_throttle=metrics.on_throttle, backoff=backoff, wait=time.wait
    )
    with Checkpoint(tmp_path / "checkpoint.json") as checkpoint:
        Consumer(
            client=client,
            stream="ride_events",
            handler=writing(client),
            checkpoint=checkpoint,
            dead_letter=tmp_path / "dead-letter.jsonl",
            batch_size=3,
            stop=time.stop,
            clock=time.clock,
            wait=time.wait,
            backoff=backoff,
            metrics=metrics,
        ).run(until_idle=True)
    return metrics


def written(kinesis: FakeKinesis) -> list[str]:
    return sorted(json.loads(data)["ride"] for data in kinesis.written)


CALLS = [
    ("DescribeStream", None),
    ("ListShards", None),
    ("GetShardIterator", "shard-1"),
    ("GetRecords", "shard-0"),  # the other shard is read meanwhile
    ("PutRecords", None),  # the whole call refused
    ("PutRecords (entries)", None),  # the call answered, each of its entries refused
]


@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize(("api", "shard"), CALLS, ids=[api for api, _ in CALLS])
def test_every_call_throttled_a_few_times_is_tried_again_and_nothing_is_lost(
    tmp_path, caplog, api, shard, code
):
    kinesis = ThrottlingKinesis(api, client_error(code, api), times=3, shard=shard)
    time = FakeTime()
    with caplog.at_level(logging.WARNING):
        metrics = consume(kinesis, tmp_path, time)
    assert kinesis.times == 0
    assert written(kinesis) == RIDES  # every ride written once
    assert metrics.value("records_scored_total") == 10
    label = api.split()[0]
    assert metrics.value("kinesis_throttled_total", api=label, code=code) == 3
    others = [(a, c) for a, _ in CALLS for c in CODES if (a.split()[0], c) != (label, code)]
    assert all(metrics.value("kinesis_throttled_total", api=a, code=c) is None for a, c in others)
    episodes = [r.getMessage() for r in caplog.records if "throttled" in r.getMessage()]
    assert len(episodes) == 1, episodes  # one line per episode, not per try
    assert label in episodes[0]
    assert code in episodes[0]
    # the pauses: the backoff's ceilings, 0.1 s doubling, and no real waiting at all
    assert [w for w in time.waits if w][:3] == pytest.approx([0.1, 0.2, 0.4])


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(0, 0.1), (1, 0.2), (3, 0.8), (5, 3.2), (6, 5.0), (50, 5.0), (10_000, 5.0)],
)
def test_the_backoff_draws_below_a_ceiling_that_doubles_from_a_tenth_of_a_second_to_five(
    attempt, ceiling
):
    assert Backoff(draw=lambda: 1.0).delay(attempt) == pytest.approx(ceiling)
    assert Backoff(draw=lambda: 0.0).delay(attempt) == 0.0  # full jitter: anywhere below it
    assert 0.0 <= Backoff().delay(attempt) <= ceiling


def test_a_long_episode_is_tried_again_without_end_below_the_cap(tmp_path):
    kinesis = ThrottlingKinesis("GetShardIterator", client_error(CODES[0], "x"), times=40)
    time = FakeTime()
    metrics = consume(kinesis, tmp_path, time)
    assert written(kinesis) == RIDES
    assert metrics.value("kinesis_throttled_total", api="GetShardIterator", code=CODES[0]) == 40
    assert max(time.waits) == pytest.approx(5.0)


@pytest.mark.parametrize(
    ("api", "error", "shard"),
    [
        ("ListShards", EndpointConnectionError(endpoint_url="http://kinesis"), None),
        ("GetShardIterator", client_error("InternalFailure", "x", status=500), "shard-0"),
        ("GetRecords", client_error("ServiceUnavailable", "x", status=503), "shard-1"),
        ("PutRecords", EndpointConnectionError(endpoint_url="http://kinesis"), None),
    ],
    ids=["no connection", "a server error", "a busy server", "no connection to write"],
)
def test_a_call_that_found_no_connection_or_server_is_tried_again_and_not_counted(
    tmp_path, caplog, api, error, shard
):
    kinesis = ThrottlingKinesis(api, error, times=3, shard=shard)
    with caplog.at_level(logging.WARNING):
        metrics = consume(kinesis, tmp_path, FakeTime())
    assert written(kinesis) == RIDES
    assert metrics.value("records_failed_total") == 0  # no record paid for it
    assert "_kinesis_throttled_total{" not in generate_latest(metrics.registry).decode()
    [line] = [r.getMessage() for r in caplog.records if "Kinesis failed" in r.getMessage()]
    assert api in line


def test_an_error_no_wait_mends_is_raised_at_once(tmp_path):
    kinesis = ThrottlingKinesis("GetShardIterator", client_error("AccessDeniedException", "x"), 1)
    time = FakeTime()
    with pytest.raises(ClientError, match="AccessDeniedException"):
        consume(kinesis, tmp_path, time)
    assert time.waits == []
    assert kinesis.calls["GetShardIterator"] == 1


def test_a_stop_ends_an_episode_of_reading_calls(tmp_path):
    kinesis = ThrottlingKinesis("GetShardIterator", client_error(CODES[0], "x"), times=99)
    time = FakeTime()
    time.stop_after = 2  # SIGTERM while a shard's iterator waits to be asked again
    consume(kinesis, tmp_path, time)  # returns: no traceback
    assert kinesis.times == 97
    assert kinesis.written == []


def test_a_stop_lets_the_batch_at_hand_be_written_first(tmp_path):
    kinesis = ThrottlingKinesis("PutRecords (entries)", client_error(CODES[1], "x"), times=3)
    time = FakeTime()
    time.stop_after = 1  # SIGTERM while the first batch's predictions wait to be sent again
    consume(kinesis, tmp_path, time)
    assert len(kinesis.written) == 3  # that batch, written: then the consumer stopped
    saved = json.loads((tmp_path / "checkpoint.json").read_text())
    assert len(saved["shards"]) == 1
