"""Errors a user can act on (`core.errors`): one line, an exit code, transient or not."""

from __future__ import annotations

import pytest

from ride_duration.core import errors


@pytest.mark.parametrize(
    ("kind", "exit_code", "transient"),
    [
        (errors.InputNotFoundError, 2, False),
        (errors.SchemaError, 2, False),
        (errors.ModelNotTrustedError, 2, False),
        (errors.TrackingServerUnreachableError, 2, True),
        (errors.OutputWriteError, 2, True),
        (errors.BackfillFailedError, 1, False),
    ],
)
def test_each_error_says_how_the_command_ends_and_whether_a_retry_helps(kind, exit_code, transient):
    error = kind("what is wrong")
    assert isinstance(error, errors.ScoringError)
    assert (error.exit_code, error.transient) == (exit_code, transient)


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (ValueError("one\ntwo"), "one"),
        (ValueError("  \n padded \n"), "padded"),
        (KeyError(), "KeyError"),
        (OSError(""), "OSError"),
    ],
)
def test_first_line(error, line):
    assert errors.first_line(error) == line


def test_a_ride_error_names_its_ride_and_field():
    error = errors.RideError(3, "trip_distance", "trip_distance must be a finite number")
    assert (error.index, error.field, str(error)) == (3, "trip_distance", error.args[0])
