"""The stream scorer as an AWS Lambda function: `lambda_function.lambda_handler`.

Triggered by the Kinesis stream `ride_events` (each record `{"ride": {...}, "ride_id": 156}`),
it puts one prediction per ride on PREDICTIONS_STREAM_NAME (`ride_predictions`), partition key
the ride id:

    {"model": "ride_duration_prediction_model", "version": "ride-duration/1", "run_id": "...",
     "prediction": {"ride_duration": 18.25, "ride_id": 156}}

and answers `{"batchItemFailures": [...]}`, the records it could not score or write (Lambda's
ReportBatchItemFailures). With TEST_RUN=True it writes nothing and answers the predictions too.
In any container: `python -m awslambdaric lambda_function.lambda_handler`.

Locally, `python lambda_function.py < rides.jsonl` hands the handler one Kinesis event made of
the records on stdin (one record's data per line), prints its answer, and says on stderr how
many records were scored and failed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ride_duration.core.settings import Settings
from ride_duration.online import stream


@functools.cache
def _handler() -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The model and the output stream: made at the container's first event, kept after (a
    container keeps its model: MODEL_REFRESH_SECONDS is the long-running scorers')."""
    _, handler = stream.scorer(Settings.from_env())
    return handler


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Score the Kinesis records of `event`; the batch item failures (and, in a test run, the
    predictions)."""
    return _handler()(event)


def main(argv: list[str] | None = None) -> int:
    """`python lambda_function.py < rides.jsonl`: one event of stdin's records, its answer on
    stdout and a one-line summary on stderr; exit code 1 when a record failed."""
    import argparse
    import json
    import sys

    from ride_duration.core import cli

    parser = argparse.ArgumentParser(
        prog="lambda_function.py",
        description="Hand the Lambda handler one Kinesis event made of stdin's lines (one "
        "record's data each) and print its answer; with TEST_RUN=True it writes nothing.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)
    failed: list[dict[str, Any]] = []

    def run() -> None:
        event = stream.kinesis_event(line.encode() for line in sys.stdin if line.strip())
        answer = lambda_handler(event, None)
        failed.extend(answer.get("batchItemFailures", []))
        print(json.dumps(answer))  # stdout: the answer alone, for a script to read
        cli.say(stream.summary(event, answer))

    code = cli.run(run, debug=args.debug)
    return code or (1 if failed else 0)


if __name__ == "__main__":
    from ride_duration.core import cli

    cli.exit(main())
