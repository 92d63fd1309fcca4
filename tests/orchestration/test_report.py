"""What a scored month tells its user: the result and its artifact (`orchestration.report`)."""

from __future__ import annotations

import logging

import pytest

from ride_duration.batch.planning import MonthOutcome
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
        "output_uri": "out/taxi_type=green/year=2021/month=03/predictions.parquet",
        "model": MODEL,
        "rows_read": 1_000,
        "rows_dropped": {"pickup_outside_month": 3, "duration_out_of_range": 7},
        "rows_scored": 990,
        "metrics": {"rmse": 6.5, "mae": None},
        "manifest_uri": "out/taxi_type=green/year=2021/month=03/_manifest.json",
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
        "output": "out/taxi_type=green/year=2021/month=03/predictions.parquet",
        "model_uri": "models:/m@a",
        "model_version": "m/1",
        "model_run_id": "abc",
        "scoring": "compiled forest",
        "rows_read": 1_000,
        "rows_dropped": {"pickup_outside_month": 3, "duration_out_of_range": 7},
        "rows_scored": 990,
        "metrics": {"rmse": 6.5, "mae": None},
        "manifest": "out/taxi_type=green/year=2021/month=03/_manifest.json",
        "seconds": {"total": 1.25},
    }


def test_score_py_ends_with_one_line_whose_last_word_is_the_current_set():
    line = report.closing_line(report.summary(result()))
    assert line == (
        "green 2021-03: 990 predictions by m/1 in "
        "out/taxi_type=green/year=2021/month=03/predictions.parquet"
    )
    assert line.split()[-1] == result().output_uri


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


# --- text tables ------------------------------------------------------------------------------

COLUMNS = [
    ("name", "name", "{}"),
    ("rows", "rows", "{:,}"),
    ("rmse", "rmse", "{:.4f}"),
    ("reason", "reason", "{}"),
]


@pytest.mark.parametrize(
    ("rows", "lines"),
    [
        ([], ["name  rows  rmse  reason"]),
        (
            [{"name": "green", "rows": 1_234_567, "rmse": 6.5, "reason": "ok"}],
            [
                "name        rows    rmse  reason",
                "green  1,234,567  6.5000  ok",
            ],
        ),
        (  # text left, numbers right, each column as wide as its widest cell
            [
                {"name": "fhvhv", "rows": 12, "rmse": 10.123456, "reason": "a"},
                {"name": "x", "rows": 1_000, "rmse": 0.5, "reason": "model m/2 → m/3"},
            ],
            [
                "name    rows     rmse  reason",
                "fhvhv     12  10.1235  a",
                "x      1,000   0.5000  model m/2 → m/3",
            ],
        ),
        (  # None, "" and a missing key are blank; zero is a number; no line ends in spaces
            [
                {"name": "a", "rows": None, "rmse": None, "reason": None},
                {"name": "b", "rows": 0, "rmse": 0.0, "reason": ""},
                {"name": "", "rows": 5},
                {},
            ],
            [
                "name  rows    rmse  reason",
                "a",
                "b        0  0.0000",
                "         5",
                "",
            ],
        ),
    ],
    ids=["no rows", "one row", "alignment", "blanks"],
)
def test_a_text_table_aligns_its_columns(rows: list[dict], lines: list[str]):
    assert report.text_table(rows, COLUMNS).split("\n") == lines


def test_a_backfill_table_shows_each_months_outcome():
    rows = [
        MonthOutcome(
            "2021-01", "green", "completed", "m/3", 1_234_567, 6.54321, 4.0, 0.01, 12.34, "out/x"
        ).as_row(),
        MonthOutcome("2021-02", "green", "failed", reason="pickup outside").as_row(),
    ]
    assert report.text_table(rows, report.BACKFILL_COLUMNS).split("\n") == [
        "taxi type  month    state      model       rows    rmse  seconds  reason",
        "green      2021-01  completed  m/3    1,234,567  6.5432     12.3",
        "green      2021-02  failed                                        pickup outside",
    ]


def test_a_status_table_shows_each_months_state():
    rows = [
        {
            "taxi_type": "yellow",
            "month": "2021-03",
            "state": "done",
            "model_version": "m/3",
            "rows_scored": 990,
            "published": "2026-12-01 10:00",
            "reason": "",
            "output": "out/not/shown",
        },
        {
            "taxi_type": "fhvhv",
            "month": "2021-04",
            "state": "not published",
            "model_version": "",
            "rows_scored": None,
            "published": "",
            "reason": "no trip file at in/x",
        },
    ]
    assert report.text_table(rows, report.STATUS_COLUMNS).split("\n") == [
        "taxi type  month    state          model  rows  published (UTC)   reason",
        "yellow     2021-03  done           m/3     990  2026-12-01 10:00",
        "fhvhv      2021-04  not published                                 no trip file at in/x",
    ]
