"""The stream handler on Kinesis-shaped events, with a small real model (`online.stream`).

The Kinesis client here is a recording fake that can refuse entries the way PutRecords does
(per-entry ErrorCode); tests/integration/test_stream.py runs the same against a Kinesis server.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from ride_duration.model.predictors import make_predictor
from ride_duration.model.service import ServingModel
from ride_duration.online import stream
from ride_duration.online.sink import KinesisSink
from tests.support.rides import MODEL, RIDE


class FakeKinesis:
    """PutRecords that keeps what it accepts and refuses entries as told, call by call."""

    def __init__(self, refuse: list[set[int]] | None = None, fail_calls: int = 0) -> None:
        self.refuse = refuse or []  # per call: positions of entries to refuse
        self.fail_calls = fail_calls  # calls that fail whole (a network error) first
        self.calls: list[int] = []
        self.written: list[dict] = []

    def put_records(self, *, StreamName: str, Records: list[dict]) -> dict:
        self.calls.append(len(Records))
        if self.fail_calls:
            self.fail_calls -= 1
            raise ConnectionError("connection reset")
        refused = self.refuse.pop(0) if self.refuse else set()
        results = []
        for i, entry in enumerate(Records):
            if i in refused:
                results.append({"ErrorCode": "ProvisionedThroughputExceededException"})
            else:
                self.written.append(entry)
                results.append({"SequenceNumber": str(len(self.written)), "ShardId": "s-0"})
        return {"FailedRecordCount": len(refused), "Records": results}


def record(sequence: int, body: object, raw: bytes | None = None) -> dict:
    data = raw if raw is not None else json.dumps(body).encode()
    return {"kinesis": {"sequenceNumber": str(sequence), "data": base64.b64encode(data).decode()}}


def event(*records: dict) -> dict:
    return {"Records": list(records)}


@pytest.fixture
def model(pipeline) -> ServingModel:
    return ServingModel(MODEL, make_predictor(pipeline))


def output(client: FakeKinesis, retries: int = 3) -> KinesisSink:
    return KinesisSink(client, "ride_predictions", retries, sleep=lambda _: None)


def test_the_course_record_becomes_the_course_prediction_with_the_real_version(model):
    client = FakeKinesis()
    answer = stream.handle(event(record(1, {"ride": RIDE, "ride_id": 156})), model, output(client))
    assert answer == {"batchItemFailures": []}
    [written] = client.written
    assert written["PartitionKey"] == "156"
    assert json.loads(written["Data"]) == {
        "model": "ride_duration_prediction_model",
        "version": "ride-duration/3",
        "run_id": "abc123",
        "prediction": {
            "ride_duration": round(float(model.predict_rides([RIDE])[0]), 2),
            "ride_id": 156,
        },
    }


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (record(2, None, raw=b"not json"), "not JSON"),
        (record(2, None, raw=b"\xff\xfe"), "not UTF-8 JSON"),
        ({"kinesis": {"sequenceNumber": "2", "data": "%%%"}}, "not base64"),
        ({"kinesis": {"sequenceNumber": "2"}}, "no data"),
        (record(2, [1, 2]), "not an object"),
        (record(2, {"ride_id": 7}), "no ride"),
        (record(2, {"ride": {"DOLocationID": 205, "trip_distance": 3.66}, "ride_id": 7}), "field"),
        (record(2, {"ride": {**RIDE, "trip_distance": -1}, "ride_id": 7}), "negative distance"),
        (record(2, {"ride": {**RIDE, "PULocationID": 1.5}, "ride_id": 7}), "not an id"),
        (record(2, {"ride": RIDE, "ride_id": [7]}), "bad ride id"),
        (record(2, {"ride": RIDE, "ride_id": ""}), "an empty ride id"),
        (record(2, {"ride": RIDE, "ride_id": "x" * 257}), "a ride id over 256 characters"),
        (record(2, {"ride": RIDE, "ride_id": 1e300}), "a ride id of 301 digits"),
        (record(2, None, raw=b'{"ride": ' * 100_000), "nested 100,000 deep"),
        (record(2, {"ride": {**RIDE, "trip_distance": 1e39}, "ride_id": 7}), "beyond float32"),
        (record(2, {"ride": {**RIDE, "PULocationID": "nan"}, "ride_id": 7}), "a NaN location"),
        (
            record(
                2,
                None,
                raw=b'{"ride": {"PULocationID": NaN, "DOLocationID": 1, '
                b'"trip_distance": 1}, "ride_id": 7}',
            ),
            "a NaN literal",
        ),
        (record(2, {"ride": "x" * 2_000_000, "ride_id": 7}), "a huge ride"),
        ({"kinesis": {"sequenceNumber": "2", "data": 17}}, "data that is not text"),
        ({"kinesis": {"sequenceNumber": "2", "data": None}}, "data that is null"),
    ],
)
def test_a_bad_record_is_reported_and_never_blocks_the_others(model, bad, why):
    client = FakeKinesis()
    good = [record(1, {"ride": RIDE, "ride_id": 1}), record(3, {"ride": RIDE, "ride_id": 3})]
    answer = stream.handle(event(good[0], bad, good[1]), model, output(client))
    assert answer == {"batchItemFailures": [{"itemIdentifier": "2"}]}, why
    assert [json.loads(w["Data"])["prediction"]["ride_id"] for w in client.written] == [1, 3]


def test_all_good_records_are_predicted_in_one_call(model):
    calls = []
    predictor = model.predictor

    class Counting:
        features = predictor.features

        def predict_checked(self, rides):
            calls.append(len(rides.kept))
            return predictor.predict_checked(rides)

    counted = ServingModel(model.ref, Counting())
    records = [
        record(i, {"ride": {**RIDE, "trip_distance": i / 10}, "ride_id": i}) for i in range(1, 301)
    ]
    records.insert(5, record(999, None, raw=b"x"))
    answer = stream.handle(event(*records), counted, output(FakeKinesis()))
    assert answer["batchItemFailures"] == [{"itemIdentifier": "999"}]
    assert calls == [300]


def test_more_than_500_predictions_go_out_in_calls_of_500(model):
    client = FakeKinesis()
    records = [record(i, {"ride": RIDE, "ride_id": i}) for i in range(1_201)]
    assert stream.handle(event(*records), model, output(client)) == {"batchItemFailures": []}
    assert client.calls == [500, 500, 201]
    keys = [w["PartitionKey"] for w in client.written]
    assert keys == [str(i) for i in range(1_201)]


def test_refused_entries_are_sent_again_until_they_are_written(model):
    client = FakeKinesis(refuse=[{0, 2}, {1}], fail_calls=1)
    records = [record(i, {"ride": RIDE, "ride_id": i}) for i in range(1, 5)]
    assert stream.handle(event(*records), model, output(client)) == {"batchItemFailures": []}
    assert client.calls == [4, 4, 2, 1]  # a failed call, then 2 refused, then 1 refused
    assert sorted(json.loads(w["Data"])["prediction"]["ride_id"] for w in client.written) == [
        1,
        2,
        3,
        4,
    ]


def test_entries_still_refused_after_the_retries_are_reported(model):
    client = FakeKinesis(refuse=[{1}, {0}, {0}, {0}])
    records = [record(i, {"ride": RIDE, "ride_id": i}) for i in (11, 12, 13)]
    answer = stream.handle(event(*records), model, output(client, retries=3))
    assert answer == {"batchItemFailures": [{"itemIdentifier": "12"}]}
    assert client.calls == [3, 1, 1, 1]


def test_a_test_run_writes_nothing_and_answers_the_predictions(model):
    answer = stream.handle(
        event(record(1, {"ride": RIDE, "ride_id": 156}), record(2, None, raw=b"x")),
        model,
        None,
    )
    assert answer["batchItemFailures"] == [{"itemIdentifier": "2"}]
    [prediction] = answer["predictions"]
    assert prediction["version"] == "ride-duration/3"
    assert prediction["prediction"]["ride_id"] == 156


def test_the_same_batch_twice_gives_identical_records(model):
    records = [
        record(i, {"ride": {**RIDE, "trip_distance": i}, "ride_id": f"r{i}"}) for i in range(50)
    ]
    first, second = FakeKinesis(), FakeKinesis()
    stream.handle(event(*records), model, output(first))
    stream.handle(event(*records), model, output(second))
    assert first.written == second.written


def test_an_empty_event_is_answered_with_no_failures(model):
    client = FakeKinesis()
    assert stream.handle({"Records": []}, model, output(client)) == {"batchItemFailures": []}
    assert client.calls == []


def test_a_whole_number_ride_id_keeps_its_integer_partition_key(model):
    client = FakeKinesis()
    stream.handle(event(record(1, {"ride": RIDE, "ride_id": 156.0})), model, output(client))
    assert client.written[0]["PartitionKey"] == "156"
    assert np.isfinite(json.loads(client.written[0]["Data"])["prediction"]["ride_duration"])


@pytest.mark.parametrize("datas", [[], [b'{"ride": {}}'], [b"a", b"b", b"c"]])
def test_a_local_event_holds_each_data_as_a_numbered_record(datas):
    records = stream.kinesis_event(datas)["Records"]
    assert [base64.b64decode(r["kinesis"]["data"]) for r in records] == datas
    assert [r["kinesis"]["sequenceNumber"] for r in records] == [
        str(n) for n in range(1, len(datas) + 1)
    ]
    assert all(r["eventSource"] == "aws:kinesis" for r in records)


def test_a_local_event_is_scored_as_lambda_would_score_it(model):
    data = json.dumps({"ride": RIDE, "ride_id": 156}).encode()
    answer = stream.handle(stream.kinesis_event([data, b"bad"]), model, None)
    assert answer["batchItemFailures"] == [{"itemIdentifier": "2"}]
    assert [p["prediction"]["ride_id"] for p in answer["predictions"]] == [156]


@pytest.mark.parametrize(
    "malformed",
    [None, 7, "text", [1], {"kinesis": None}, {"kinesis": "x"}, {"kinesis": {"data": "e30="}}],
)
def test_a_record_that_is_no_kinesis_record_is_left_out_and_never_fails_the_batch(model, malformed):
    client = FakeKinesis()
    good = record(1, {"ride": RIDE, "ride_id": 1})
    answer = stream.handle({"Records": [good, malformed]}, model, output(client))
    assert answer == {"batchItemFailures": []}
    assert len(client.written) == 1


@pytest.mark.parametrize("hostile", [None, 7, "text", [], {"Records": "x"}, {"Records": None}])
def test_an_event_that_is_no_kinesis_event_holds_nothing_to_score(model, hostile):
    client = FakeKinesis()
    assert stream.handle(hostile, model, output(client)) == {"batchItemFailures": []}
    assert client.written == []


class ValidatingKinesis(FakeKinesis):
    """Refuses a whole PutRecords call holding an entry whose key it does not accept, as
    Kinesis answers an invalid partition key (a ValidationException for the call)."""

    def put_records(self, *, StreamName: str, Records: list[dict]) -> dict:
        if any(len(entry["PartitionKey"]) > 256 for entry in Records):
            self.calls.append(len(Records))
            error = Exception("1 validation error detected: partitionKey")
            error.response = {"Error": {"Code": "ValidationException"}}
            raise error
        return super().put_records(StreamName=StreamName, Records=Records)


def test_a_call_refused_for_one_entry_is_split_and_the_others_are_written(model):
    client = ValidatingKinesis()
    entries = [(str(i), {"Data": b"{}", "PartitionKey": f"ride-{i}"}) for i in range(21)]
    entries[7] = ("7", {"Data": b"{}", "PartitionKey": "k" * 300})
    failed = output(client).put_chunk(entries)
    assert failed == ["7"]
    assert sorted(w["PartitionKey"] for w in client.written) == sorted(
        f"ride-{i}" for i in range(21) if i != 7
    )
    assert len(client.calls) <= 2 * 5 + 1  # halving: about 2 log2(21) calls, not 21


def test_a_call_refused_for_good_is_not_retried(model):
    class Missing(FakeKinesis):
        def put_records(self, *, StreamName: str, Records: list[dict]) -> dict:
            self.calls.append(len(Records))
            error = Exception("stream ride_predictions not found")
            error.response = {"Error": {"Code": "ResourceNotFoundException"}}
            raise error

    client = Missing()
    entries = [(str(i), {"Data": b"{}", "PartitionKey": str(i)}) for i in range(3)]
    assert output(client).put_chunk(entries) == ["0", "1", "2"]
    assert client.calls == [3]


def test_a_ride_without_an_id_is_keyed_by_its_record(model):
    client = FakeKinesis()
    answer = stream.handle(event(record(42, {"ride": RIDE})), model, output(client))
    assert answer == {"batchItemFailures": []}
    assert [w["PartitionKey"] for w in client.written] == ["42"]
