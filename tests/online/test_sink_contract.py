"""The contract every prediction sink of the stream keeps (`online.sink.PredictionSink`), over
every sink and the ways its store answers: each prediction is written or reported, never both,
never lost; written as given, once. A new sink adds its rows here."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from ride_duration.online.sink import KinesisSink, Prediction, PredictionSink
from tests.online.test_stream import FakeKinesis, ValidatingKinesis


class Store:
    """What a sink writes to, as the test reads it back: (partition key, record) per write."""

    def __init__(self, client: FakeKinesis) -> None:
        self.client = client

    def written(self) -> list[tuple[str, dict]]:
        return [(e["PartitionKey"], json.loads(e["Data"])) for e in self.client.written]


def kinesis(client: FakeKinesis) -> tuple[PredictionSink, Store]:
    sink = KinesisSink(client, "ride_predictions", retries=3, sleep=lambda _: None)
    return sink, Store(client)


# (sink, its store as it behaves, the sequence numbers the sink must report failed)
SINKS: list[
    tuple[
        Callable[[FakeKinesis], tuple[PredictionSink, Store]], Callable[[], FakeKinesis], set[str]
    ]
] = [
    (kinesis, lambda: FakeKinesis(), set()),
    (kinesis, lambda: FakeKinesis(fail_calls=2), set()),
    (kinesis, lambda: FakeKinesis(refuse=[{0, 5}, {1}]), set()),
    (kinesis, lambda: FakeKinesis(refuse=[{3}, {0}, {0}, {0}]), {"3"}),
    (kinesis, lambda: FakeKinesis(fail_calls=10), {str(i) for i in range(8)}),
    (kinesis, lambda: ValidatingKinesis(), {"6"}),
]
IDS = [
    "kinesis accepts",
    "kinesis fails twice whole",
    "kinesis throttles entries once",
    "kinesis refuses an entry for good",
    "kinesis is down",
    "kinesis refuses a call for an entry's key",
]


def predictions() -> list[Prediction]:
    made = [
        Prediction(str(i), f"ride-{i}", {"prediction": {"ride_id": i, "ride_duration": i + 0.5}})
        for i in range(8)
    ]
    made[6] = Prediction("6", "k" * 300, made[6].record)  # a key ValidatingKinesis refuses
    return made


@pytest.mark.parametrize(("make", "client", "failed"), SINKS, ids=IDS)
def test_each_prediction_is_written_once_or_reported(make, client, failed):
    sink, store = make(client())
    given = predictions()
    reported = sink.write(given)
    assert set(reported) == failed
    assert len(reported) == len(set(reported))
    written = store.written()
    expected = [(p.partition_key, p.record) for p in given if p.sequence_number not in failed]
    assert sorted(written, key=str) == sorted(expected, key=str)  # as given, each once


@pytest.mark.parametrize(("make", "client", "failed"), SINKS[:1], ids=IDS[:1])
def test_nothing_to_write_writes_nothing(make, client, failed):
    sink, store = make(client())
    assert sink.write([]) == []
    assert store.written() == []
