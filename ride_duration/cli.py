"""What every command-line entry point shares: one-line errors, exit codes and --debug."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator

from ride_duration.errors import ScoringError


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


@contextlib.contextmanager
def prefect_api() -> Iterator[str]:
    """Run the block against a Prefect API that answers: the configured one, or a local server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from ride_duration.prefect_server import ensure_api
    from ride_duration.settings import Settings

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
    import argparse

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
    import argparse

    from ride_duration.months import Month, MonthError

    try:
        return str(Month.parse(text))
    except MonthError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def taxi_types(known: tuple[str, ...]) -> Callable[[str], list[str]]:
    """An argparse type: one or several comma-separated taxi types."""
    import argparse

    def parse(text: str) -> list[str]:
        chosen = [part.strip() for part in text.split(",") if part.strip()]
        unknown = [part for part in chosen if part not in known]
        if unknown or not chosen:
            raise argparse.ArgumentTypeError(
                f"unknown taxi type {', '.join(unknown) or text!r}: choose from {', '.join(known)}"
            )
        return chosen

    return parse
