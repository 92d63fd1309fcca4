"""Scoring a stream: a batch of Kinesis records in, one prediction record per ride out.

The Lambda handler (`lambda_function.py`) and the local consumer (`stream.py`) both call
`handle`. Each input record's data is JSON `{"ride": {...}, "ride_id": ...}`. Every record is
decoded and checked by the feature rules of batch scoring; all good rides of the batch are
predicted in one call (`ServingModel.score`); the predictions go to a sink (`online.sink`:
Kinesis, with bounded retries). A record that cannot be decoded or checked, or whose
prediction could not be written, is reported by its sequence number in `batchItemFailures`
(Lambda's ReportBatchItemFailures contract) and logged with its reason: it never blocks the
others.

Delivery is at least once (Lambda retries a batch from its first failed record); a prediction
record is a pure function of the ride and the model version, so a reader de-duplicates on
(`ride_id`, `version`).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ride_duration.core.settings import Settings
from ride_duration.data import rules
from ride_duration.model.refresh import ModelRefresher
from ride_duration.model.service import ServingModel, load_for_serving
from ride_duration.online.answers import minutes
from ride_duration.online.kinesis import check_output, kinesis_client
from ride_duration.online.sink import Kinesis, KinesisSink, Prediction, PredictionSink, refused

logger = logging.getLogger(__name__)

# The course's name for the model in each prediction record.
MODEL_NAME = "ride_duration_prediction_model"


@dataclass(frozen=True)
class Ride:
    """One decoded input record: its sequence number, the ride and its id."""

    sequence_number: str
    ride: dict[str, Any]
    ride_id: object


def scorer(
    settings: Settings, client: Kinesis | None = None
) -> tuple[ModelRefresher, Callable[[dict[str, Any]], dict[str, Any]]]:
    """The model `settings` name, in a refresher (which `stream.py` starts when
    MODEL_REFRESH_SECONDS is set), and a handler of Kinesis events that scores each event with
    the refresher's model as the event comes.

    Predictions go to PREDICTIONS_STREAM_NAME through `client` (by default one made from
    `settings`), a stream checked first (`check_output`: a wrong endpoint or stream is
    one line now, not every record failed later); with TEST_RUN nothing is written and the
    answer holds the predictions.
    """
    sink: PredictionSink | None = None
    if not settings.test_run:
        check_output(settings)
        if client is None:
            client = kinesis_client(settings)
        sink = KinesisSink(client, settings.predictions_stream_name, settings.put_retries)
    refresher = ModelRefresher(load_for_serving(settings), settings)

    def handler(event: dict[str, Any]) -> dict[str, Any]:
        return handle(event, refresher.model, sink)

    return refresher, handler


def handle(event: object, model: ServingModel, sink: PredictionSink | None) -> dict[str, Any]:
    """Score the records of one Kinesis event; the Lambda answer, with its batchItemFailures.

    The predictions go to `sink`; with none (a test run) nothing is written and the answer
    holds them. Nothing a record holds makes this raise: a record that cannot be decoded,
    checked or written is reported by its own sequence number, and the others are scored.
    """
    rides, failures = decode(_records(event))
    scored = model.score([ride.ride for ride in rides])
    for error in scored.errors:
        refused(rides[error.index].sequence_number, str(error))
    failures += [rides[error.index].sequence_number for error in scored.errors]
    good = [rides[index] for index in scored.kept]
    durations = minutes(scored.predictions)
    predictions = [
        prediction_record(model, duration, ride.ride_id)
        for ride, duration in zip(good, durations, strict=True)
    ]
    answer: dict[str, Any] = {}
    if sink is None:
        answer["predictions"] = predictions
    else:
        failures += sink.write(
            [
                Prediction(ride.sequence_number, _partition_key(ride), prediction)
                for ride, prediction in zip(good, predictions, strict=True)
            ]
        )
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
            refused(sequence, "the record's JSON is nested too deeply")
            failures.append(sequence)
            continue
        except (KeyError, TypeError, ValueError, binascii.Error) as error:
            refused(sequence, f"the record is not base64 JSON ({type(error).__name__})")
            failures.append(sequence)
            continue
        if not isinstance(body, dict) or not isinstance(body.get("ride"), dict):
            refused(sequence, 'the record is not {"ride": {...}, "ride_id": ...}')
            failures.append(sequence)
            continue
        try:
            ride_id = rules.ride_id(body.get("ride_id"))
        except ValueError as error:
            refused(sequence, str(error))
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


def _partition_key(ride: Ride) -> str:
    """A prediction's partition key: its ride's id, else (a ride without one) the sequence
    number of the record it came from."""
    return ride.sequence_number if ride.ride_id is None else str(ride.ride_id)


def _kind(value: object) -> str:
    return type(value).__name__


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
