"""The flows' Prefect tasks (`orchestration.tasks`): only I/O is retried."""

from __future__ import annotations

import pytest

from ride_duration.core import errors
from ride_duration.orchestration import tasks


class Finished:
    """A task run's final state as the retry condition sees it: `result()` raises its error."""

    def __init__(self, error: BaseException | None) -> None:
        self.error = error

    def result(self) -> None:
        if self.error is not None:
            raise self.error


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (errors.TrackingServerUnreachableError("down"), True),
        (errors.OutputWriteError("dropped"), True),
        (ConnectionResetError("reset"), True),
        (OSError("the store hiccupped"), True),
        (errors.SchemaError("no such column"), False),
        (errors.InputNotFoundError("no file"), False),
        (errors.QualityError("rmse too high"), False),
        (errors.ModelNotTrustedError("not trusted"), False),
        (ValueError("a bug"), False),
        (None, False),
    ],
)
def test_only_io_failures_are_retried(error, retried):
    assert tasks.is_transient(None, None, Finished(error)) is retried


def test_a_template_with_credentials_is_refused_before_the_model_is_resolved(monkeypatch):
    with pytest.raises(errors.ConfigurationError, match="input_uri_template"):
        tasks.prepare_run("models:/never/1", "https://user:pw@host/{taxi_type}.parquet", "")
