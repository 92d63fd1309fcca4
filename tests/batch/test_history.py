"""The monitoring table: one row per month, read back across months by any parquet reader."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ride_duration.batch import history
from ride_duration.batch.result import MonthResult
from ride_duration.core.months import Month
from tests.support.rides import MODEL


def result(taxi_type: str, month: str, rmse: float | None = 5.0) -> MonthResult:
    return MonthResult(
        taxi_type=taxi_type,
        month=Month.parse(month),
        input_uri="in",
        output_uri="out",
        model=MODEL,
        rows_read=10,
        rows_dropped={"missing_datetime": 2},
        rows_scored=8,
        metrics={"rmse": rmse, "mae": None, "mean_error": None, "unknown_pair_share": None},
    )


def write(folder, name: str, data: bytes) -> None:
    (folder / "_monitoring").mkdir(exist_ok=True)
    (folder / "_monitoring" / name).write_bytes(data)


@pytest.mark.parametrize(
    ("stray", "data"),
    [
        ("green-2021-09.parquet", b"not parquet"),
        ("green-2021-10.parquet", history.to_bytes(pa.table({"month": ["2021-10"]}))),
        ("green-2021-11.parquet", b""),
        ("notes.txt", b"a reader's own file"),
    ],
)
def test_the_table_is_every_months_row_in_order_and_skips_files_that_are_none(
    tmp_path, stray, data
):
    for taxi_type, month in [("green", "2021-03"), ("yellow", "2021-01"), ("green", "2021-01")]:
        write(
            tmp_path,
            f"{taxi_type}-{month}.parquet",
            history.to_bytes(history.month_row(result(taxi_type, month), "published")),
        )
    write(tmp_path, stray, data)
    table = history.read(str(tmp_path))
    assert list(zip(table["taxi_type"].to_pylist(), table["month"].to_pylist(), strict=True)) == [
        ("green", "2021-01"),
        ("green", "2021-03"),
        ("yellow", "2021-01"),
    ]
    assert history.read(str(tmp_path), "green")["month"].to_pylist() == ["2021-01", "2021-03"]
    # Read whole as one table by a plain parquet reader too.
    assert (
        pq.read_table(sorted((tmp_path / "_monitoring").glob("*-2021-0*.parquet"))[0]).num_rows == 1
    )


def test_a_row_of_a_month_without_reference_or_trips_has_no_figures():
    row = history.month_row(result("green", "2021-03", rmse=None), "refused", "why").to_pylist()[0]
    assert (row["state"], row["reason"], row["has_reference"]) == ("refused", "why", False)
    assert row["dropped_share"] == 0.2
    assert row["rmse"] is None
    assert all(row[f"{c}_psi"] is None and row[f"{c}_counts"] is None for c in history.COLUMNS)


def test_an_empty_root_has_an_empty_table(tmp_path):
    assert history.read(str(tmp_path)).num_rows == 0
    assert history.read(str(tmp_path)).schema.equals(history.SCHEMA)
