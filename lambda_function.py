"""The stream scorer as an AWS Lambda function: `lambda_function.lambda_handler`.

Triggered by the Kinesis stream `ride_events` (each record `{"ride": {...}, "ride_id": 156}`),
it puts one prediction per ride on PREDICTIONS_STREAM_NAME (`ride_predictions`), partition key
the ride id:

    {"model": "ride_duration_prediction_model", "version": "ride-duration/3", "run_id": "...",
     "prediction": {"ride_duration": 12.9, "ride_id": 156}}

and answers `{"batchItemFailures": [...]}`, the records it could not score or write (Lambda's
ReportBatchItemFailures). With TEST_RUN=True it writes nothing and answers the predictions too.
In any container: `python -m awslambdaric lambda_function.lambda_handler`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ride_duration import streaming
from ride_duration.settings import Settings


@functools.cache
def _handler() -> Callable[[dict], dict]:
    """The model and the output stream: made at the container's first event, kept after."""
    _, handler = streaming.scorer(Settings.from_env())
    return handler


def lambda_handler(event: dict, context: Any) -> dict:
    """Score the Kinesis records of `event`; the batch item failures (and, in a test run, the
    predictions)."""
    return _handler()(event)
