"""The monitoring table: one row per taxi type and month, from its last run that was checked.

Each row holds the month's error metrics, its drift figures per column, and the histograms
they came from (the month's and the reference's), so a reader can recompute every figure. A
month refused by a limit has its row too (state `refused`, and why), though its predictions
were not published. The rows are small parquet files under `{root}/_monitoring/`, one per
month, each written whole by the run that holds the month's lock; together they are one
table for any parquet reader:

    SELECT month, rmse, trip_distance_psi FROM '{root}/_monitoring/*.parquet' ORDER BY month
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from ride_duration.batch.paths import MONITORING_FOLDER
from ride_duration.batch.result import MonthResult
from ride_duration.core import storage, uris
from ride_duration.monitoring.drift import FIGURES
from ride_duration.monitoring.profile import COLUMNS, Profile

State = Literal["published", "refused"]
METRICS = ("rmse", "mae", "mean_error", "unknown_pair_share")
SCHEMA = pa.schema(
    [
        ("taxi_type", pa.string()),
        ("month", pa.string()),
        ("state", pa.string()),
        ("reason", pa.string()),
        ("model_version", pa.string()),
        ("has_reference", pa.bool_()),
        ("rows_read", pa.int64()),
        ("rows_scored", pa.int64()),
        *((name, pa.float64()) for name in METRICS),
        ("dropped_share", pa.float64()),
        ("reference_dropped_share", pa.float64()),
        *(
            field
            for column in COLUMNS
            for field in (
                *((f"{column}_{figure}", pa.float64()) for figure in FIGURES),
                (f"{column}_unknown_share", pa.float64()),
                (f"{column}_counts", pa.list_(pa.int64())),
                (f"{column}_reference_counts", pa.list_(pa.int64())),
                (f"{column}_edges", pa.list_(pa.float64())),
            )
        ),
        ("scored_at", pa.timestamp("ms", tz="UTC")),
    ]
)


def month_row(result: MonthResult, state: State, reason: str | None = None) -> pa.Table:
    """The month's row of the monitoring table."""
    row: dict[str, Any] = {
        "taxi_type": result.taxi_type,
        "month": str(result.month),
        "state": state,
        "reason": reason,
        "model_version": result.model.label,
        "has_reference": result.reference is not None,
        "rows_read": result.rows_read,
        "rows_scored": result.rows_scored,
        **{name: result.metrics.get(name) for name in METRICS},
        "dropped_share": (
            sum(result.rows_dropped.values()) / result.rows_read if result.rows_read else None
        ),
        "reference_dropped_share": result.reference.dropped_share if result.reference else None,
        "scored_at": datetime.now(UTC).replace(microsecond=0),
    }
    drift = {column.column: column for column in result.drift}
    for column in COLUMNS:
        _histograms(row, column, result.profile, result.reference)
        for figure in FIGURES:
            row[f"{column}_{figure}"] = drift[column].figure(figure) if column in drift else None
    return pa.Table.from_pylist([row], schema=SCHEMA)


def _histograms(
    row: dict[str, Any], column: str, month: Profile | None, reference: Profile | None
) -> None:
    histogram = month.histograms.get(column) if month else None
    before = reference.histograms.get(column) if reference else None
    row[f"{column}_counts"] = None if histogram is None else histogram.counts.tolist()
    row[f"{column}_reference_counts"] = None if before is None else before.counts.tolist()
    edges = histogram.edges if histogram is not None else None
    row[f"{column}_edges"] = None if edges is None else edges.tolist()
    row[f"{column}_unknown_share"] = None if histogram is None else histogram.unknown_share


def to_bytes(row: pa.Table) -> bytes:
    """A row as a parquet file's bytes."""
    sink = pa.BufferOutputStream()
    pq.write_table(row, sink)
    return bytes(sink.getvalue())


def read(root: str, taxi_type: str | None = None) -> pa.Table:
    """The monitoring table under `root` (a taxi type's rows only, when given), by taxi type
    and month; a file that is no row of it is skipped."""
    folder = uris.join(root, MONITORING_FOLDER)
    pattern = f"{taxi_type}-*.parquet" if taxi_type else "*.parquet"
    tables = []
    for name in storage.list_names(folder, pattern):
        try:
            table = storage.read_table(uris.join(folder, name))
            tables.append(table.select(SCHEMA.names).cast(SCHEMA))
        except (OSError, ValueError, KeyError, pa.ArrowException):
            continue
    if not tables:
        return SCHEMA.empty_table()
    return pa.concat_tables(tables).sort_by([("taxi_type", "ascending"), ("month", "ascending")])
