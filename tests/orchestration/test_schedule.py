"""The month a scheduled run scores (`orchestration.schedule`), said in the run's log."""

from __future__ import annotations

import logging
from datetime import datetime
from types import SimpleNamespace

import pytest

from ride_duration.core.months import Month
from ride_duration.core.settings import Settings
from ride_duration.orchestration import schedule


def started(monkeypatch, start: str) -> None:
    """This test as a flow run scheduled at `start` and started by hand (no run to look up).

    Prefect's runtime cannot mock a start time through its environment variables: its own
    error message says to monkeypatch instead."""
    run = SimpleNamespace(scheduled_start_time=datetime.fromisoformat(start), id=None)
    monkeypatch.setattr(schedule, "flow_run", run)


@pytest.mark.parametrize(
    ("start", "lag", "month"),
    [
        ("2026-08-01T09:00:00+00:00", 3, Month(2026, 5)),
        ("2026-08-01T02:00:00+00:00", 3, Month(2026, 4)),  # still July in New York
        ("2026-01-15T12:00:00+00:00", 0, Month(2026, 1)),
    ],
)
def test_the_month_is_the_scheduled_starts_minus_the_lag(monkeypatch, start, lag, month):
    started(monkeypatch, start)
    settings = Settings(publication_lag_months=lag)
    assert schedule.scheduled_month_of_run(settings) == month


def test_a_run_started_by_hand_is_warned_which_month_it_scores(monkeypatch, caplog):
    started(monkeypatch, "2026-08-01T09:00:00+00:00")
    logger = logging.getLogger("test-schedule")
    with caplog.at_level(logging.INFO, logger="test-schedule"):
        schedule.explain_scheduled_month(Month(2026, 5), Settings(), logger)
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "scoring 2026-05, the month of this run's scheduled start (2026-08-01 05:00" in (
        record.getMessage()
    )
    assert "started by hand" in record.getMessage()
