"""What the command-line entry points share: argument types, one-line errors, exit codes.

This module stays light (no Prefect, pandas, MLflow or scikit-learn): the entry points parse
their arguments with it before importing anything heavy, so that --help and argument errors
answer at once.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ride_duration.core.errors import MissingInstallError, ScoringError


class _NoTraceback(logging.Filter):
    """Drops tracebacks from log records, so a known failure reads as one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        return True


class _KnownFailureOnce(logging.Filter):
    """Drops the console lines in which Prefect reports a known failure (the task's exception,
    its retries, the flow's exception and final state): the command says it once, as its last
    line. The Prefect run's own logs keep them all, and `--debug` shows them."""

    def __init__(self) -> None:
        super().__init__()
        self.names = tuple(_names_of(ScoringError))

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(("prefect.flow_runs", "prefect.task_runs")):
            return True
        if record.exc_info and isinstance(record.exc_info[1], ScoringError):
            return False
        message = record.getMessage()
        return not any(name in message for name in self.names)


def _names_of(kind: type[ScoringError]) -> list[str]:
    """The names of `kind` and of every subclass of it."""
    return [kind.__name__] + [name for sub in kind.__subclasses__() for name in _names_of(sub)]


def quiet(debug: bool) -> None:
    """Log a known failure as one line, once (unless `debug`): filters on the handlers the
    root logger and Prefect's loggers have now. Prefect makes its handlers when it is imported:
    a command that imports it late calls this again then (a handler is filtered once)."""
    if debug:
        return
    # urllib3's "Retrying (Retry(total=1, ...))" warnings: the error line says the outcome.
    # Prefect's workers that send a run's events and logs say "Still processing items" while
    # they drain at exit, which they do anyway, sometimes after the command's last line.
    for chatty in ("urllib3", "EventsWorker", "APILogWorker"):
        logging.getLogger(chatty).setLevel(logging.ERROR)
    for name in ("prefect", "prefect.flow_runs", "prefect.task_runs", ""):
        for handler in logging.getLogger(name).handlers:
            if any(isinstance(f, _NoTraceback) for f in handler.filters):
                continue
            handler.addFilter(_NoTraceback())
            if isinstance(handler, logging.StreamHandler):  # the console, not the API
                handler.addFilter(_KnownFailureOnce())


def run(main: Callable[[], object], debug: bool) -> int:
    """Call `main`; turn a known failure into one line on stderr and exit code 2."""
    quiet(debug)
    try:
        main()
    except ScoringError as error:
        if debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        if debug:
            raise
        print("error: interrupted (Ctrl-C)", file=sys.stderr)
        return 128 + signal.SIGINT
    return 0


@contextmanager
def role(extra: str) -> Iterator[None]:
    """The imports of a command's role: a library its install lacks is one line naming the
    extra to install (`pip install 'ride-duration[batch]'`), not a traceback."""
    try:
        yield
    except ModuleNotFoundError as error:
        if (error.name or "").startswith("ride_duration"):
            raise
        raise MissingInstallError(
            f"this command needs the {extra} install, and {error.name} is not installed: "
            f"pip install 'ride-duration[{extra}]', or run it from the project's environment "
            "(make install)"
        ) from None


def end_within(seconds: float) -> None:
    """Make sure the process ends within `seconds` of a SIGINT or SIGTERM, with 128 + its
    number, whatever its libraries do meanwhile.

    Prefect turns the signal into a crashed flow run and ends the process; in about one of forty
    runs of the signal tests, its threads then deadlocked on the interpreter's import lock and
    the process never exited.
    The signal is seen through the wakeup file descriptor, which every Python signal handler
    writes to, so Prefect's handlers stay in place (it checks they are its own).
    """
    read, write = os.pipe()
    os.set_blocking(write, False)
    signal.set_wakeup_fd(write, warn_on_full_buffer=False)

    def watch() -> None:
        while received := os.read(read, 1):
            if received[0] in (signal.SIGINT, signal.SIGTERM):
                time.sleep(seconds)
                sys.stderr.flush()
                os._exit(128 + received[0])

    threading.Thread(target=watch, name="end-within", daemon=True).start()


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


def early(
    parser: argparse.ArgumentParser, check: Callable[[argparse.Namespace], None] | None = None
) -> None:
    """Parse the command line and run `check` before anything heavy is imported.

    --help and argument errors exit here, at once; a ScoringError from `check` is one line on
    stderr and its exit code.
    """
    arguments = parser.parse_args()
    try:
        if check is not None:
            check(arguments)
    except ScoringError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)


def add_options(
    parser: argparse.ArgumentParser, *, model: bool = True, output: bool = True
) -> None:
    """The options the commands share: the model, where trips are (and go), and --debug."""
    if model:
        parser.add_argument(
            "--model-uri", "--model", dest="model_uri", default="", help="MLflow model URI"
        )
    parser.add_argument("--input-uri-template", default="", help="overrides INPUT_URI_TEMPLATE")
    if output:
        parser.add_argument(
            "--output-root",
            default="",
            help="OUTPUT_ROOT, or a folder inside it whose name starts with _ (e.g. "
            "output/_experiments), which readers of OUTPUT_ROOT skip",
        )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def parse_tool(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line of a tool that reads trips (train, compile) and log plainly.

    Such a tool takes --input-uri-template and --debug besides its own arguments; its INFO
    lines are its progress, so they are printed as they are.
    """
    add_options(parser, model=False, output=False)
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return arguments


def registered_model_tool(
    argv: list[str] | None,
    prog: str,
    description: str,
    action: Callable[[], Callable[[str, Any, str], str]],
) -> int:
    """A command `PROG MODEL_URI [--input-uri-template T] [--debug]` of the batch install.

    `action()`, called once the line is parsed (it imports what the command needs), gives the
    function that takes the model URI, the settings and the trip file template, and returns
    the one line the command prints."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("model_uri", help="e.g. models:/ride-duration/3 or models:/NAME@ALIAS")
    args = parse_tool(parser, argv)

    def run_action() -> None:
        from ride_duration.core.settings import Settings

        with role("batch"):
            call = action()
        settings = Settings.from_env()
        settings.configure_mlflow()
        template = args.input_uri_template or settings.input_uri_template
        print(call(args.model_uri, settings, template))

    return run(run_action, debug=args.debug)


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
