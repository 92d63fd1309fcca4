"""What a scored month tells its user: the result and its artifact (`orchestration.report`)."""

from __future__ import annotations

import logging

import pytest

from ride_duration.batch.result import MonthResult
from ride_duration.core.months import Month
from ride_duration.model.resolve import ModelRef
from ride_duration.orchestration import report

MODEL = ModelRef(uri="models:/m@a", resolved_uri="models:/m/1", name="m", version="1", run_id="abc")


def result(**changes) -> MonthResult:
    values = {
        "taxi_type": "green",
        "month": Month(2021, 3),
        "input_uri": "in/green_tripdata_2021-03.parquet",
        "output_uri": "out/taxi_type=green/year=2021/month=03/abc.parquet",
        "model": MODEL,
        "rows_read": 1_000,
        "rows_dropped": {"pickup_outside_month": 3, "duration_out_of_range": 7},
        "rows_scored": 990,
        "metrics": {"rmse": 6.5, "mae": None},
        "manifest_uri": "out/_manifest-abc.json",
        "scoring_path": "compiled forest",
        "seconds": {"total": 1.25},
    }
    return MonthResult(**(values | changes))


def test_the_summary_is_the_result_in_plain_values():
    summary = report.summary(result())
    assert summary == {
        "taxi_type": "green",
        "month": "2021-03",
        "input": "in/green_tripdata_2021-03.parquet",
        "output": "out/taxi_type=green/year=2021/month=03/abc.parquet",
        "model_uri": "models:/m@a",
        "model_version": "m/1",
        "model_run_id": "abc",
        "scoring": "compiled forest",
        "rows_read": 1_000,
        "rows_dropped": {"pickup_outside_month": 3, "duration_out_of_range": 7},
        "rows_scored": 990,
        "metrics": {"rmse": 6.5, "mae": None},
        "manifest": "out/_manifest-abc.json",
        "seconds": {"total": 1.25},
    }


@pytest.mark.parametrize(
    "line",
    [
        "# Ride durations, green 2021-03\n",
        "| rows read | 1,000 |",
        "| dropped: pickup outside month | 3 |",
        "| dropped: duration out of range | 7 |",
        "| rows scored | 990 |",
        "| rmse | 6.5000 |",
        "| mae | n/a |",
        "| model | `models:/m@a` = m/1 |",
        "| seconds | 1.2 |",
    ],
)
def test_the_report_shows(line):
    assert line in report.markdown_report(result())


def test_the_summary_and_report_show_no_credentials():
    secret = ModelRef(uri="https://user:secret@host/model?X-Amz-Signature=sig", resolved_uri="x")
    shown = result(model=secret)
    assert report.summary(shown)["model_uri"] == "https://host/model"
    assert "secret" not in str(report.summary(shown))
    assert "secret" not in report.markdown_report(shown)
    assert "sig" not in report.markdown_report(shown)


def test_the_log_says_what_was_read_dropped_scored_and_written(caplog):
    logger = logging.getLogger("test-report")
    with caplog.at_level(logging.INFO, logger="test-report"):
        report.log_result(result(), logger)
    first, path, quality = (r.getMessage() for r in caplog.records)
    assert first.startswith("read 1000 rows, dropped 10 (pickup_outside_month=3, ")
    assert "scored 990 with m/1" in first
    assert path == "predicted with compiled forest"
    assert quality == "quality: rmse=6.5, mae=None"
