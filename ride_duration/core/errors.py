"""Errors a user can act on: each carries one line that says what is wrong and how to fix it."""

from typing import Any


class ScoringError(Exception):
    """A problem with the input, the model or the configuration, not a bug.

    The CLI prints the message as one line and exits with `exit_code`. Retrying helps only
    when `transient` is set (a server or store that did not answer).
    """

    exit_code = 2
    transient = False


class InputNotFoundError(ScoringError):
    """The month's trip file does not exist (not published yet, or a wrong location)."""


class InputUnreachableError(ScoringError):
    """The trip files' server or store did not answer (DNS, refused, timed out): not a sign
    that the month is missing."""

    transient = True


class InputUnreadableError(ScoringError):
    """The trip file exists but is not a readable parquet file."""


class SchemaError(ScoringError):
    """The trip file lacks a column the model needs, or a column has an unusable type."""


class ModelNotFoundError(ScoringError):
    """The model URI names no model, version, alias or artifact."""


class ModelCheckError(ScoringError):
    """The model loaded, but fails on the rides every model is checked with before it serves."""


class TrackingServerUnreachableError(ScoringError):
    """The MLflow tracking server did not answer after bounded retries."""

    transient = True


class ConfigurationError(ScoringError):
    """An environment variable holds a value that cannot be used."""


class MissingInstallError(ScoringError):
    """A library the command needs is not installed: its role's extra is missing."""


class BackfillFailedError(ScoringError):
    """Some months of a backfill failed; the others completed. `rows` are its table's."""

    exit_code = 1

    def __init__(self, message: str, rows: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.rows = rows or []


class BackfillInterruptedError(ScoringError):
    """A backfill on workers was stopped by a signal (Ctrl-C, SIGTERM); the flow runs it had
    created and that had not finished were cancelled. Its exit code is the shell's for that
    signal: 128 + its number (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signal_number


class ModelNotTrustedError(ScoringError):
    """The model's location is not among TRUSTED_MODEL_PREFIXES (loading a pickle runs code)."""


class MonthBusyError(ScoringError):
    """Another live run is scoring the same month."""


class QualityError(ScoringError):
    """The month's drops or quality metrics crossed a configured limit; nothing was published."""


class RideError(ScoringError):
    """A ride sent to the web service or the stream scorer that the model cannot score."""

    def __init__(self, index: int, field: str | None, message: str) -> None:
        super().__init__(message)
        self.index = index  # the ride's position in its request or batch
        self.field = field  # the offending field, None when the ride itself is malformed


class OutputWriteError(ScoringError):
    """The output location refused or dropped the write; nothing was published."""

    transient = True


def first_line(error: BaseException) -> str:
    """The first line of an error's message, or its type's name when it has none."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def network_words(error: BaseException) -> str:
    """What the network said of a failed call, from `error` or one it came from: "Connection
    refused", not "[Errno 111] Connection refused"."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = seen.__cause__ or seen.__context__
    if isinstance(error, OSError):  # a short message of its own ("timed out")
        return str(error)
    return "Connection refused" if "Connection refused" in str(error) else ""
