"""Where the stream's predictions go: the `PredictionSink` interface and its Kinesis sink.

A sink writes a batch's predictions and answers with the sequence numbers of the records whose
prediction it could not write, each logged with why: the stream reports exactly those to Lambda
(`batchItemFailures`), and the others are never written twice by one call. The Kinesis sink
puts them with `put_records` (at most 500 a call), re-sends entries that come back with an
ErrorCode and calls that fail whole with bounded retries, and splits a call refused for one
of its entries until that entry is alone, so that it never costs the others their write.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

logger = logging.getLogger(__name__)

PUT_RECORDS_LIMIT = 500  # Kinesis PutRecords takes at most 500 records per call


@dataclass(frozen=True)
class Prediction:
    """One prediction to write: the sequence number of the record it answers, its partition
    key, and its record (the course's prediction record)."""

    sequence_number: str
    partition_key: str
    record: dict[str, Any]


class PredictionSink(Protocol):
    """Where a stream's predictions go."""

    def write(self, predictions: Sequence[Prediction]) -> list[str]:
        """Write `predictions`; the sequence numbers of those not written, each logged."""
        ...


class Kinesis(Protocol):
    """What the Kinesis sink needs of a client (boto3's, or a test's)."""

    def put_records(
        self, *, StreamName: str, Records: list[dict[str, Any]]
    ) -> dict[str, Any]: ...  # boto3 names


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


@dataclass(frozen=True)
class KinesisSink:
    """The predictions as JSON records of a Kinesis stream, with bounded retries."""

    client: Kinesis
    stream_name: str
    retries: int = 3
    backoff_seconds: float = 0.1
    sleep: Callable[[float], None] = time.sleep

    def write(self, predictions: Sequence[Prediction]) -> list[str]:
        """Put `predictions`, at most PUT_RECORDS_LIMIT a call; the sequence numbers of those
        still not written after the retries."""
        entries = [
            (
                prediction.sequence_number,
                {
                    "Data": json.dumps(prediction.record).encode(),
                    "PartitionKey": prediction.partition_key,
                },
            )
            for prediction in predictions
        ]
        failed: list[str] = []
        for start in range(0, len(entries), PUT_RECORDS_LIMIT):
            failed += self.put_chunk(entries[start : start + PUT_RECORDS_LIMIT])
        return failed

    def put_chunk(self, entries: list[tuple[str, dict[str, Any]]]) -> list[str]:
        """PutRecords one chunk of (sequence number, entry): re-send the entries Kinesis
        refused, and a call that failed whole, at most `retries` times; a call refused for one
        of its entries is split until that entry is alone."""
        pending = entries
        for attempt in range(self.retries + 1):
            if attempt:
                self.sleep(self.backoff_seconds * 2 ** (attempt - 1))
            try:
                answer = self.client.put_records(
                    StreamName=self.stream_name, Records=[entry for _, entry in pending]
                )
            except Exception as error:  # noqa: BLE001 - sorted by what Kinesis said
                code = _error_code(error)
                logger.warning("put_records of %d records failed: %s", len(pending), error)
                if code in _ENTRY_ERRORS and len(pending) > 1:
                    middle = len(pending) // 2
                    return self.put_chunk(pending[:middle]) + self.put_chunk(pending[middle:])
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
            refused(sequence, f"its prediction was not written after {self.retries} retries")
        return [sequence for sequence, _ in pending]


def _error_code(error: Exception) -> str | None:
    """The AWS error code of a failed call (botocore's ClientError), None for other failures
    (connections, timeouts), which are worth a retry."""
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def refused(sequence: str, reason: str) -> None:
    """Log that the record `sequence` is reported failed, and why."""
    logger.warning("record %s reported as failed: %s", sequence, reason)
