"""The result of scoring a month (`batch.result`)."""

from __future__ import annotations

from ride_duration.batch.result import MonthResult
from ride_duration.core.months import Month
from ride_duration.model.resolve import ModelRef


def test_a_result_starts_empty_and_names_its_month():
    result = MonthResult("fhvhv", Month(2023, 1), "in", "out", ModelRef(uri="m", resolved_uri="m"))
    assert result.label == "fhvhv 2023-01"
    assert (result.rows_read, result.rows_scored, result.rows_dropped) == (0, 0, {})
    assert (result.metrics, result.seconds, result.manifest_uri) == ({}, {}, "")
    other = MonthResult("green", Month(2021, 3), "in", "out", result.model)
    other.rows_dropped["x"] = 1
    assert result.rows_dropped == {}  # each result its own counters
