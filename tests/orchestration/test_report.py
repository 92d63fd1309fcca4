"""What a scored month tells its user: the result and its artifact (`orchestration.report`)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from ride_duration.batch.planning import MonthOutcome
from ride_duration.batch.result import MonthResult
from ride_duration.core.months import Month
from ride_duration.model.resolve import ModelRef
from ride_duration.monitoring.drift import ColumnDrift
from ride_duration.monitoring.profile import UNKNOWN_ZONE_BIN, Histogram, Profile
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


def profile(unknown_zones: int) -> Profile:
    """A profile of 20 trips: distances in two bins, pickups in zone 1 or unknown."""
    zones = np.zeros(UNKNOWN_ZONE_BIN + 1, dtype=np.int64)
    zones[1], zones[UNKNOWN_ZONE_BIN] = 20 - unknown_zones, unknown_zones
    return Profile(
        {
            "trip_distance": Histogram(np.array([10, 10]), np.array([2.0])),
            "PULocationID": Histogram(zones),
        }
    )


# A month measured against its model's reference: 10% of its pickups unknown, 5% in the
# reference's.
MEASURED = {
    "reference": profile(unknown_zones=1),
    "profile": profile(unknown_zones=2),
    "drift": [ColumnDrift("trip_distance", 0.31, 0.12), ColumnDrift("PULocationID", 0.05, 0.03)],
}
# A month of 0 rows scored against a reference: no figure.
UNMEASURED = {
    "reference": profile(unknown_zones=1),
    "profile": Profile.empty_like({"trip_distance": np.array([2.0])}, ["PULocationID"]),
    "drift": [ColumnDrift("trip_distance", None, None), ColumnDrift("PULocationID", None, None)],
    "rows_scored": 0,
    "metrics": {"rmse": None, "mae": None},
}


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
        "drift": {"reference": None, "columns": {}},
        "manifest": "out/taxi_type=green/year=2021/month=03/_manifest.json",
        "seconds": {"total": 1.25},
    }


@pytest.mark.parametrize(
    ("changes", "drift"),
    [
        ({}, {"reference": None, "columns": {}}),
        (
            MEASURED,
            {
                "reference": "profile.npz",
                "columns": {
                    "trip_distance": {"psi": 0.31, "js_distance": 0.12},
                    "PULocationID": {
                        "psi": 0.05,
                        "js_distance": 0.03,
                        "unknown_share": 0.1,
                        "reference_unknown_share": 0.05,
                    },
                },
            },
        ),
        (
            UNMEASURED,
            {
                "reference": "profile.npz",
                "columns": {
                    "trip_distance": {"psi": None, "js_distance": None},
                    "PULocationID": {
                        "psi": None,
                        "js_distance": None,
                        "unknown_share": None,
                        "reference_unknown_share": 0.05,
                    },
                },
            },
        ),
    ],
    ids=["no reference", "measured", "no rows scored"],
)
def test_the_summary_has_the_drift_of_the_manifest_in_plain_values(changes, drift):
    summary = report.summary(result(**changes))
    assert summary["drift"] == drift
    assert json.loads(json.dumps(summary["drift"])) == drift  # JSON as it is


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


@pytest.mark.parametrize(
    ("changes", "lines"),
    [
        ({}, ["no reference profile: drift not measured"]),
        (
            MEASURED,
            [
                "| column | psi | js distance | unknown zones (reference) |",
                "|---|---|---|---|",
                "| trip_distance | 0.3100 | 0.1200 |  |",
                "| PULocationID | 0.0500 | 0.0300 | 10.0% (5.0%) |",
            ],
        ),
        (
            UNMEASURED,
            [
                "| column | psi | js distance | unknown zones (reference) |",
                "|---|---|---|---|",
                "| trip_distance | n/a | n/a |  |",
                "| PULocationID | n/a | n/a | n/a (5.0%) |",
            ],
        ),
    ],
    ids=["no reference", "measured", "no rows scored"],
)
def test_the_report_ends_with_the_months_drift(changes, lines):
    text = report.markdown_report(result(**changes))
    heading = "\n## Drift from the model's reference profile\n\n"
    assert text.endswith(heading + "\n".join(lines) + "\n")


def test_the_summary_and_report_show_no_credentials():
    secret = ModelRef(uri="https://user:secret@host/model?X-Amz-Signature=sig", resolved_uri="x")
    shown = result(model=secret)
    assert report.summary(shown)["model_uri"] == "https://host/model"
    assert "secret" not in str(report.summary(shown))
    assert "secret" not in report.markdown_report(shown)
    assert "sig" not in report.markdown_report(shown)


@pytest.mark.parametrize(
    ("changes", "drift"),
    [
        ({}, "drift: not measured (the model has no reference profile)"),
        (
            {
                "reference": profile(0),
                "drift": [
                    ColumnDrift("trip_distance", 0.012345, 0.05),
                    ColumnDrift("PULocationID", None, None),
                ],
            },
            "drift (psi) from the model's reference profile: trip_distance=0.0123, "
            "PULocationID=n/a",
        ),
    ],
)
def test_the_log_says_what_was_read_dropped_scored_and_written(caplog, changes, drift):
    logger = logging.getLogger("test-report")
    with caplog.at_level(logging.INFO, logger="test-report"):
        report.log_result(result(**changes), logger)
    first, path, quality, drifted = (r.getMessage() for r in caplog.records)
    assert first.startswith("read 1000 rows, dropped 10 (pickup_outside_month=3, ")
    assert "scored 990 with m/1" in first
    assert path == "predicted with compiled forest"
    assert quality == "quality: rmse=6.5, mae=None"
    assert drifted == drift


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


def drift(**psi: float | None) -> dict:
    """A manifest's drift section with these columns' PSI (their JS distance: a tenth of it)."""
    return {
        "reference": "profile.npz",
        "columns": {
            column: {"psi": value, "js_distance": None if value is None else value / 10}
            for column, value in psi.items()
        },
    }


NO_REFERENCE = {"reference": None, "columns": {}}
BLANK = {"drift": "", "drift_column": "", "psi": None, "js_distance": None}


def largest(drift: str, column: str, psi: float) -> dict:
    """A row's cells of a largest drift on `column` (its JS distance: a tenth of its PSI)."""
    return {"drift": drift, "drift_column": column, "psi": psi, "js_distance": psi / 10}


@pytest.mark.parametrize(
    ("section", "warn_psi", "cells"),
    [
        (None, 0.25, BLANK),  # no set, or one made before drift was measured
        (NO_REFERENCE, 0.25, BLANK | {"drift": "no reference"}),
        (drift(trip_distance=None, PULocationID=None), 0.25, BLANK | {"drift": "n/a"}),
        (
            drift(trip_distance=0.08, actual_duration=0.02),
            0.25,
            largest("0.08 trip_distance", "trip_distance", 0.08),
        ),
        (
            drift(trip_distance=0.31, PULocationID=1.25),
            0.25,
            largest("1.25 PULocationID !", "PULocationID", 1.25),
        ),
        (  # at WARN_PSI is not above it, as the check has it
            drift(trip_distance=0.25),
            0.25,
            largest("0.25 trip_distance", "trip_distance", 0.25),
        ),
        (  # WARN_PSI=none: no mark
            drift(trip_distance=0.31),
            None,
            largest("0.31 trip_distance", "trip_distance", 0.31),
        ),
        (  # the training month: every PSI 0, no column to name
            drift(trip_distance=0.0, PULocationID=0.0),
            0.25,
            BLANK | {"drift": "0.00", "psi": 0.0, "js_distance": 0.0},
        ),
    ],
    ids=[
        "no section",
        "no reference",
        "no rows scored",
        "the largest psi",
        "above WARN_PSI",
        "at WARN_PSI",
        "no WARN_PSI",
        "no drift at all",
    ],
)
def test_a_months_largest_drift_is_a_rows_cells(section, warn_psi, cells):
    assert report.drift_cells(section, warn_psi) == cells


REFUSED = (
    "green 2021-03 failed its checks: trip_distance psi 0.61 > MAX_PSI 0.5; nothing was published"
)


def outcome(month: str, state: str, section: dict | None, **fields: object) -> dict:
    """A backfill table's row: a month's outcome and its drift, as the backfill makes it."""
    row = MonthOutcome(month, "green", state, **fields).as_row()
    return row | report.drift_cells(section, 0.25)


SCORED = {"model_version": "ride-duration/1", "seconds": 4.12}


# The tables as printed, as wide as a terminal (E501): their alignment is what is tested.
BACKFILL_TABLE = """\
taxi type  month    state          model                 rows   rmse  drift (psi)              seconds  reason
green      2021-01  completed      ride-duration/1     73,906   6.67  0.08 trip_distance           4.1
green      2021-02  completed      ride-duration/1  1,234,567  12.50  0.31 trip_distance !         4.1
green      2021-03  failed                                                                         2.0  {}
green      2021-04  completed      ride-duration/1     82,738   6.90  no reference                 4.1
green      2021-05  completed      ride-duration/1          0         n/a                          4.1
green      2021-06  done           ride-duration/1     83,609   7.01  0.12 predicted_duration           current since 2026-12-06 01:20
green      2021-07  not published                                                                       no trip file at in/x"""  # noqa: E501


def test_a_backfill_table_shows_each_months_errors_and_drift():
    rows = [
        outcome(
            "2021-01",
            "completed",
            drift(trip_distance=0.08, predicted_duration=0.02),
            rows_scored=73_906,
            rmse=6.674953,
            mae=4.4,
            **SCORED,
        ),
        outcome(
            "2021-02",
            "completed",
            drift(trip_distance=0.31, predicted_duration=0.1),
            rows_scored=1_234_567,
            rmse=12.5,
            **SCORED,
        ),
        outcome("2021-03", "failed", None, seconds=2.0, reason=REFUSED),
        outcome("2021-04", "completed", NO_REFERENCE, rows_scored=82_738, rmse=6.9, **SCORED),
        outcome("2021-05", "completed", drift(trip_distance=None), rows_scored=0, **SCORED),
        outcome(
            "2021-06",
            "done",
            drift(predicted_duration=0.12),
            model_version="ride-duration/1",
            rows_scored=83_609,
            rmse=7.01,
            reason="current since 2026-12-06 01:20",
        ),
        outcome("2021-07", "not published", None, reason="no trip file at in/x"),
    ]
    assert report.text_table(rows, report.BACKFILL_COLUMNS) == BACKFILL_TABLE.format(REFUSED)


STATUS_TABLE = """\
taxi type  month    state          model   rows  rmse  drift (psi)           published (UTC)   reason
yellow     2021-03  done           m/3      990  6.67  0.31 trip_distance !  2026-12-01 10:00
yellow     2021-04  stale          m/2    1,000  7.00  no reference          2026-11-01 10:00  model changed (m/2 → m/3)
fhvhv      2021-04  not published                                                              no trip file at in/x"""  # noqa: E501


def test_a_status_table_shows_each_months_state_errors_and_drift():
    rows = [
        {
            "taxi_type": "yellow",
            "month": "2021-03",
            "state": "done",
            "model_version": "m/3",
            "rows_scored": 990,
            "rmse": 6.674953,
            "mae": 4.4,
            **report.drift_cells(drift(trip_distance=0.31), 0.25),
            "published": "2026-12-01 10:00",
            "reason": "",
            "output": "out/not/shown",
        },
        {
            "taxi_type": "yellow",
            "month": "2021-04",
            "state": "stale",
            "model_version": "m/2",
            "rows_scored": 1_000,
            "rmse": 7.0,
            **report.drift_cells(NO_REFERENCE, 0.25),
            "published": "2026-11-01 10:00",
            "reason": "model changed (m/2 → m/3)",
        },
        {
            "taxi_type": "fhvhv",
            "month": "2021-04",
            "state": "not published",
            "model_version": "",
            "rows_scored": None,
            "rmse": None,
            **report.drift_cells(None, 0.25),
            "published": "",
            "reason": "no trip file at in/x",
        },
    ]
    assert report.text_table(rows, report.STATUS_COLUMNS) == STATUS_TABLE
