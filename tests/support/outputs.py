"""Months published the way a scoring run publishes them, without scoring: for the tests of
what reads the output (states, plans, migration, readers)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from ride_duration.batch import manifest
from ride_duration.batch.output import output_table
from ride_duration.batch.paths import MonthOutput
from ride_duration.batch.result import MonthResult
from ride_duration.batch.sink import ParquetFolder
from ride_duration.core.months import Month
from ride_duration.data import features, layouts
from ride_duration.model.resolve import ModelRef


def model(version: int, run_id: str | None = None) -> ModelRef:
    """Version `version` of the registered model "m", whose run is "run{version}"."""
    return ModelRef(
        uri=f"models:/m/{version}",
        resolved_uri=f"models:/m/{version}",
        name="m",
        version=str(version),
        run_id=run_id or f"run{version}",
    )


def scored_rows(rows: int, label: str, seed: int = 0) -> pa.Table:
    """`rows` predictions in the output's schema, all made by the model `label`."""
    rng = np.random.default_rng(seed)
    pickup = np.datetime64("2021-03-01", "us") + rng.integers(0, 10**12, rows).astype(
        "timedelta64[us]"
    )
    trips = pa.table(
        {
            layouts.PICKUP: pa.array(pickup),
            layouts.PICKUP_LOCATION: pa.array(rng.integers(1, 265, rows)),
            layouts.DROPOFF_LOCATION: pa.array(rng.integers(1, 265, rows)),
            features.ACTUAL_DURATION: pa.array(rng.uniform(1, 60, rows)),
        }
    )
    ids = pa.array([f"{label}-{seed}-{i}" for i in range(rows)])
    return output_table(trips, ids, rng.uniform(1, 60, rows), label)


def publish(
    root: str,
    taxi_type: str,
    month: Month,
    ref: ModelRef,
    *,
    rows: int = 3,
    input_info: dict | None = None,
    seed: int = 0,
) -> MonthOutput:
    """Publish `rows` predictions of `ref` as the month's current set, with their manifest."""
    output = MonthOutput(root, taxi_type, month)
    sink = ParquetFolder(output, stale_after_seconds=600)
    result = MonthResult(
        taxi_type,
        month,
        f"in/{taxi_type}-{month}.parquet",
        output.current,
        ref,
        rows_read=rows,
        rows_dropped={},
        rows_scored=rows,
        metrics={"rmse": 5.0},
        scoring_path="compiled forest",
        seconds={"total": 1.0},
    )
    with sink.claim("test", result.label):
        staged = sink.stage(ref)
        staged.write(scored_rows(rows, ref.label, seed))
        content = manifest.build(
            result,
            input_info=input_info if input_info is not None else {"bytes": 100, "etag": None},
            version_uri=staged.uri,
            flow_run_id=None,
            started_at=datetime(2026, 12, 6, tzinfo=UTC),
            code_version="git:test",
        )
        sink.publish(staged, content)
    return output
