"""Scoring a stream: a batch of Kinesis records in, one prediction record per ride out.

The Lambda handler (`lambda_function.py`) and the local consumer (`stream.py`) both call
`handle`. Each input record's data is JSON `{"ride": {...}, "ride_id": ...}`. Every record is
decoded and checked by the feature rules of batch scoring; all good rides of the batch are
predicted in one call; the predictions go out with `put_records` (at most 500 a call), entries
that come back with an ErrorCode re-sent with bounded retries. A record that cannot be decoded
or checked, or whose prediction could not be written, is reported by its sequence number in
`batchItemFailures` (Lambda's ReportBatchItemFailures contract) and logged with its reason: it
never blocks the others.

Delivery is at least once (Lambda retries a batch from its first failed record); a prediction
record is a pure function of the ride and the model version, so a reader de-duplicates on
(`ride_id`, `version`).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ride_duration.core.settings import Settings
from ride_duration.data import rules
from ride_duration.model.service import ServingModel, load_for_serving
from ride_duration.online.answers import minutes
from ride_duration.online.kinesis import check_output, kinesis_client

logger = logging.getLogger(__name__)

# The course's name for the model in each prediction record.
MODEL_NAME = "ride_duration_prediction_model"
PUT_RECORDS_LIMIT = 500  # Kinesis PutRecords takes at most 500 records per call


@dataclass(frozen=True)
class Ride:
    """One decoded input record: its sequence number, the ride and its id."""

    sequence_number: str
    ride: dict[str, Any]
    ride_id: object


class Kinesis(Protocol):
    """What the handler needs of a Kinesis client (boto3's, or a test's)."""

    def put_records(
        self, *, StreamName: str, Records: list[dict[str, Any]]
    ) -> dict[str, Any]: ...  # boto3 names


@dataclass(frozen=True)
class Output:
    """Where predictions go: a Kinesis stream, with bounded retries of refused entries."""

    client: Kinesis | None
    stream_name: str
    retries: int = 3
    backoff_seconds: float = 0.1
    sleep: Callable[[float], None] = time.sleep


def scorer(
    settings: Settings, client: Kinesis | None = None
) -> tuple[ServingModel, Callable[[dict[str, Any]], dict[str, Any]]]:
    """The model `settings` name, and a handler of Kinesis events that scores with it.

    Predictions go to PREDICTIONS_STREAM_NAME through `client` (by default one made from
    `settings`), a stream checked first (`check_output`: a wrong endpoint or stream is
    one line now, not every record failed later); with TEST_RUN nothing is written and the
    answer holds the predictions.
    """
    if not settings.test_run:
        check_output(settings)
        if client is None:
            client = kinesis_client(settings)
    model = load_for_serving(settings)
    output = Output(
        None if settings.test_run else client,
        settings.predictions_stream_name,
        settings.put_retries,
    )
    return model, functools.partial(handle, model=model, output=output, test_run=settings.test_run)


def handle(
    event: object, model: ServingModel, output: Output, *, test_run: bool = False
) -> dict[str, Any]:
    """Score the records of one Kinesis event; the Lambda answer, with its batchItemFailures.

    Nothing a record holds makes this raise: a record that cannot be decoded, checked or
    written is reported by its own sequence number, and the others are scored.
    """
    rides, failures = decode(_records(event))
    checked = rules.check_rides([ride.ride for ride in rides])
    for error in checked.errors:
        _refused(rides[error.index].sequence_number, str(error))
    failures += [rides[error.index].sequence_number for error in checked.errors]
    good = [rides[index] for index in checked.kept]
    durations = minutes(model.predictor.predict_checked(checked)) if good else []
    predictions = [
        prediction_record(model, duration, ride.ride_id)
        for ride, duration in zip(good, durations, strict=True)
    ]
    answer: dict[str, Any] = {}
    if test_run:
        answer["predictions"] = predictions
    else:
        failures += _put(output, good, predictions)
    answer["batchItemFailures"] = [{"itemIdentifier": sequence} for sequence in failures]
    return answer


def _records(event: object) -> list[object]:
    """The event's records: its list of `Records`, or none when it has no such list."""
    records = event.get("Records") if isinstance(event, dict) else None
    if records is None:
        records = []
    if not isinstance(records, list):
        logger.error("the event's Records is a %s, not a list: nothing to score", _kind(records))
        return []
    return records


def decode(records: Sequence[object]) -> tuple[list[Ride], list[str]]:
    """The rides of Kinesis event records, and the sequence numbers of those that are not.

    A record without a sequence number cannot be reported (Lambda would fail the whole batch
    for an empty itemIdentifier) and never comes from Kinesis: it is logged and left out.
    """
    rides, failures = [], []
    for position, record in enumerate(records):
        kinesis = record.get("kinesis") if isinstance(record, dict) else None
        sequence = kinesis.get("sequenceNumber") if isinstance(kinesis, dict) else None
        if not isinstance(kinesis, dict) or not isinstance(sequence, str) or not sequence:
            logger.error(
                "record %d of the event is not a Kinesis record with a sequence number "
                "(%s): it cannot be reported, and is left out",
                position,
                rules.shown(record),
            )
            continue
        try:
            body = json.loads(base64.b64decode(kinesis["data"], validate=True))
        except RecursionError:
            _refused(sequence, "the record's JSON is nested too deeply")
            failures.append(sequence)
            continue
        except (KeyError, TypeError, ValueError, binascii.Error) as error:
            _refused(sequence, f"the record is not base64 JSON ({type(error).__name__})")
            failures.append(sequence)
            continue
        if not isinstance(body, dict) or not isinstance(body.get("ride"), dict):
            _refused(sequence, 'the record is not {"ride": {...}, "ride_id": ...}')
            failures.append(sequence)
            continue
        try:
            ride_id = rules.ride_id(body.get("ride_id"))
        except ValueError as error:
            _refused(sequence, str(error))
            failures.append(sequence)
            continue
        rides.append(Ride(sequence, body["ride"], ride_id))
    return rides, failures


def prediction_record(model: ServingModel, duration: float, ride_id: object) -> dict[str, Any]:
    """The course's output record, with the model's real version and run (`duration` as
    `answers.minutes` rounds it)."""
    return {
        "model": MODEL_NAME,
        "version": model.version,
        "run_id": model.ref.run_id,
        "prediction": {"ride_duration": float(duration), "ride_id": ride_id},
    }


def _put(output: Output, rides: list[Ride], predictions: list[dict[str, Any]]) -> list[str]:
    """Write the predictions; the sequence numbers of rides whose prediction was not written.

    A prediction's partition key is its ride's id, else (a ride without one) the sequence
    number of the record it came from.
    """
    failed: list[str] = []
    entries = [
        (
            ride.sequence_number,
            {
                "Data": json.dumps(prediction).encode(),
                "PartitionKey": ride.sequence_number if ride.ride_id is None else str(ride.ride_id),
            },
        )
        for ride, prediction in zip(rides, predictions, strict=True)
    ]
    for start in range(0, len(entries), PUT_RECORDS_LIMIT):
        failed += _put_chunk(output, entries[start : start + PUT_RECORDS_LIMIT])
    return failed


# What Kinesis answers a whole PutRecords call with when an entry of it is unacceptable (its
# size, its key): halving the call finds the entry, and the others are written.
_ENTRY_ERRORS = {"ValidationException", "InvalidArgumentException"}
# What it answers when trying again later may help.
_TRANSIENT_ERRORS = {
    "ProvisionedThroughputExceededException",
    "LimitExceededException",
    "ThrottlingException",
    "InternalFailure",
    "ServiceUnavailable",
    "KMSThrottlingException",
}


def _put_chunk(output: Output, entries: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """PutRecords one chunk: re-send the entries Kinesis refused, and a call that failed whole,
    at most `retries` times; a call refused for one of its entries is split until that entry
    is alone, so that it never costs the others their write."""
    assert output.client is not None  # a test run, which has none, writes nothing
    pending = entries
    for attempt in range(output.retries + 1):
        if attempt:
            output.sleep(output.backoff_seconds * 2 ** (attempt - 1))
        try:
            answer = output.client.put_records(
                StreamName=output.stream_name, Records=[entry for _, entry in pending]
            )
        except Exception as error:  # noqa: BLE001 - sorted by what Kinesis said
            code = _error_code(error)
            logger.warning("put_records of %d records failed: %s", len(pending), error)
            if code in _ENTRY_ERRORS and len(pending) > 1:
                middle = len(pending) // 2
                return _put_chunk(output, pending[:middle]) + _put_chunk(output, pending[middle:])
            if code is None or code in _TRANSIENT_ERRORS:
                continue
            break  # refused for good (the stream, the permissions): no retry helps
        pending = [
            entry
            for entry, result in zip(pending, answer["Records"], strict=True)
            if result.get("ErrorCode")
        ]
        if not pending:
            return []
    for sequence, _ in pending:
        _refused(sequence, f"its prediction was not written after {output.retries} retries")
    return [sequence for sequence, _ in pending]


def _error_code(error: Exception) -> str | None:
    """The AWS error code of a failed call (botocore's ClientError), None for other failures
    (connections, timeouts), which are worth a retry."""
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def _kind(value: object) -> str:
    return type(value).__name__


def _refused(sequence: str, reason: str) -> None:
    logger.warning("record %s reported as failed: %s", sequence, reason)


def summary(event: dict[str, Any], answer: dict[str, Any]) -> str:
    """One line for the user of a local run: the event's records, how many were scored (and
    written, unless a test run), how many failed."""
    records = len(event.get("Records", []))
    failed = len(answer.get("batchItemFailures", []))
    plural = "" if records == 1 else "s"
    return f"{records} record{plural}: {records - failed} scored, {failed} failed"


def kinesis_event(datas: Iterable[bytes], stream: str = "local") -> dict[str, Any]:
    """A Lambda Kinesis event holding one record per data, numbered from 1 in one shard."""
    from ride_duration.online.consumer import lambda_record

    arn = f"arn:aws:kinesis:local:000000000000:stream/{stream}"
    records = [
        lambda_record(
            {"PartitionKey": str(number), "SequenceNumber": str(number), "Data": data},
            "shardId-000000000000",
            arn,
        )
        for number, data in enumerate(datas, start=1)
    ]
    return {"Records": records}
