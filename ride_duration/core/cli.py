"""What the command-line entry points share: their arguments, one-line errors, exit codes.

This module stays light (no Prefect, pandas, MLflow or scikit-learn): the entry points parse
their arguments with it before importing anything heavy, so that --help and argument errors
answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import sys
from collections.abc import Callable, Iterator

from ride_duration.core.errors import ScoringError


class _NoTraceback(logging.Filter):
    """Drops tracebacks from log records, so a known failure reads as one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        return True


def run(main: Callable[[], object], debug: bool) -> int:
    """Call `main`; turn a known failure into one line on stderr and exit code 2."""
    if not debug:
        for name in ("prefect", "prefect.flow_runs", "prefect.task_runs", ""):
            for handler in logging.getLogger(name).handlers:
                handler.addFilter(_NoTraceback())
    try:
        main()
    except ScoringError as error:
        if debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return 0


def exit(code: int) -> None:
    """End the command with `code`, sparing the interpreter's garbage collection at exit.

    That collection costs a second or more after a month is scored, for objects that die with
    the process anyway: frozen, they are not collected. Output is flushed first; files and
    logs are closed as usual.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    gc.freeze()
    sys.exit(code)


def early(parser: argparse.ArgumentParser, check: Callable[[argparse.Namespace], None]) -> None:
    """Parse the command line and run `check` before anything heavy is imported.

    --help and argument errors exit here, at once; a ScoringError from `check` is one line on
    stderr and its exit code.
    """
    arguments = parser.parse_args()
    try:
        check(arguments)
    except ScoringError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)


def score_parser() -> argparse.ArgumentParser:
    """The arguments of `python score.py TAXI_TYPE YEAR MONTH [options]`."""
    from ride_duration.core.months import FIRST_YEAR, LAST_YEAR
    from ride_duration.data.layouts import TAXI_TYPES

    parser = argparse.ArgumentParser(
        prog="score.py", description="Predict ride durations for one month of TLC trips."
    )
    parser.add_argument("taxi_type", choices=TAXI_TYPES, help="which TLC trip records")
    parser.add_argument("year", type=bounded_int(FIRST_YEAR, LAST_YEAR), help="e.g. 2021")
    parser.add_argument("month", type=bounded_int(1, 12), help="1 to 12; that month is scored")
    parser.add_argument("--model-uri", default="", help="MLflow model URI or artifact location")
    parser.add_argument("--input-uri-template", default="", help="overrides INPUT_URI_TEMPLATE")
    parser.add_argument("--output-root", default="", help="overrides OUTPUT_ROOT")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def backfill_parser() -> argparse.ArgumentParser:
    """The arguments of `python backfill.py TAXI_TYPES START END [options]`."""
    from ride_duration.data.layouts import TAXI_TYPES

    parser = argparse.ArgumentParser(
        prog="backfill.py", description="Re-score a range of past months of TLC trips."
    )
    parser.add_argument(
        "taxi_types",
        type=taxi_types(TAXI_TYPES),
        help="one or several of yellow,green,fhv,fhvhv, comma-separated",
    )
    parser.add_argument("start", type=month_text, help="first month, YYYY-MM")
    parser.add_argument("end", type=month_text, help="last month, YYYY-MM (included)")
    parser.add_argument("--mode", choices=["missing", "failed", "all"], default="missing")
    parser.add_argument("--dry-run", action="store_true", help="list what would happen")
    parser.add_argument("--max-concurrency", type=bounded_int(1, 64), default=4)
    parser.add_argument("--model", dest="model_uri", default="", help="MLflow model URI")
    parser.add_argument("--deployment", default="", help="run months on its workers")
    parser.add_argument("--input-uri-template", default="", help="overrides INPUT_URI_TEMPLATE")
    parser.add_argument("--output-root", default="", help="overrides OUTPUT_ROOT")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def check_backfill_months(arguments: argparse.Namespace) -> None:
    """The backfill flow's own month checks (from 2009, over, in order), before Prefect starts."""
    from ride_duration.core.months import Month, check_past, month_range
    from ride_duration.core.settings import Settings

    months = month_range(Month.parse(arguments.start), Month.parse(arguments.end))
    check_past(months, Settings.from_env().schedule_timezone)


def no_check(_: argparse.Namespace) -> None:
    """For commands whose arguments need no check beyond their types."""


@contextlib.contextmanager
def prefect_api() -> Iterator[str]:
    """Run the block against a Prefect API that answers: the configured one, or a local server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from ride_duration.core.settings import Settings
    from ride_duration.orchestration.server import ensure_api

    settings = Settings.from_env()
    url = ensure_api(
        port=settings.local_prefect_port,
        timeout_seconds=settings.local_prefect_start_timeout_seconds,
        say=say,
    )
    with temporary_settings({PREFECT_API_URL: url}):
        yield url


def say(line: str) -> None:
    """Tell the user what a command is doing, on stderr (stdout carries its results)."""
    print(line, file=sys.stderr, flush=True)


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from `low` to `high`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value

    return parse


def month_text(text: str) -> str:
    """An argparse type: a month as YYYY-MM."""
    from ride_duration.core.months import Month, MonthError

    try:
        return str(Month.parse(text))
    except MonthError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def taxi_types(known: tuple[str, ...]) -> Callable[[str], list[str]]:
    """An argparse type: one or several comma-separated taxi types."""

    def parse(text: str) -> list[str]:
        chosen = [part.strip() for part in text.split(",") if part.strip()]
        unknown = [part for part in chosen if part not in known]
        if unknown or not chosen:
            raise argparse.ArgumentTypeError(
                f"unknown taxi type {', '.join(unknown) or text!r}: choose from {', '.join(known)}"
            )
        return chosen

    return parse
