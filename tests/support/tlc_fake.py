"""Generated trip files shaped like the TLC's: every taxi type's layout, both green dtype eras.

Like the real files (see ../shared/data/tlc/SOURCES.md), they carry a block of rows whose
optional columns are all null, a few pickups from other months and years, durations outside
1..60 minutes and negative ones. Durations follow distance and the pickup zone, so a model
trained on one generated month predicts the next one well.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ZONES = 265


def make_trips(
    taxi_type: str = "green",
    year: int = 2021,
    month: int = 1,
    rows: int = 2_000,
    *,
    variant: str = "A",
    seed: int = 0,
    messy: bool = True,
) -> pa.Table:
    """One month of trips in `taxi_type`'s layout; variant "B" is the green 2023-02+ dtype era.

    With `messy`, about 1% of rows have a pickup outside the month, 3% last under a minute or
    over an hour, 0.5% end before they start, and 40% have their optional columns null.
    """
    rng = np.random.default_rng([seed, year, month, sum(taxi_type.encode())])
    start = np.datetime64(datetime(year, month, 1), "us")
    end = np.datetime64(datetime(year + month // 12, month % 12 + 1, 1), "us")
    span = int((end - start) / np.timedelta64(1, "us"))
    pickup = start + rng.integers(0, span, rows).astype("timedelta64[us]")
    pu = rng.integers(1, 60, rows)  # a few busy zones, so pairs repeat and a model can learn them
    do = rng.integers(1, 60, rows)
    distance = np.round(rng.gamma(2.0, 1.5, rows), 2)
    minutes = 3 + 3.2 * distance + (pu % 7) + rng.normal(0, 2, rows)
    minutes = np.clip(minutes, 1.5, 59)
    if messy:
        kinds = rng.random(rows)
        minutes = np.where(kinds < 0.015, rng.uniform(0, 0.9, rows), minutes)
        minutes = np.where((kinds >= 0.015) & (kinds < 0.03), rng.uniform(61, 300, rows), minutes)
        minutes = np.where((kinds >= 0.03) & (kinds < 0.035), -rng.uniform(1, 30, rows), minutes)
        stray = rng.random(rows) < 0.01
        stray_pickups = np.array(
            [datetime(2009, 1, 1), _shift(year, month, -1), _shift(year, month, +1)],
            dtype="datetime64[us]",
        )[rng.integers(0, 3, rows)] + rng.integers(0, 86_400_000_000, rows).astype(
            "timedelta64[us]"
        )
        pickup = np.where(stray, stray_pickups, pickup)
    dropoff = pickup + (minutes * 60e6).astype("timedelta64[us]")
    null_block = (rng.random(rows) < 0.4) if messy else np.zeros(rows, dtype=bool)
    return _LAYOUTS[taxi_type](rng, rows, pickup, dropoff, pu, do, distance, null_block, variant)


def write_trips(path: Path, table: pa.Table) -> Path:
    """Write `table` as a parquet file (creating folders) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def file_name(taxi_type: str, year: int, month: int) -> str:
    """The TLC's file name of a month."""
    return f"{taxi_type}_tripdata_{year:04d}-{month:02d}.parquet"


def _shift(year: int, month: int, months: int) -> datetime:
    index = year * 12 + month - 1 + months
    return datetime(index // 12, index % 12 + 1, 1) + timedelta(days=1)


def _optional(values: np.ndarray, nulls: np.ndarray, kind: pa.DataType) -> pa.Array:
    return pa.array(values, mask=nulls, type=kind)


def _green(rng, rows, pickup, dropoff, pu, do, distance, nulls, variant):
    a = variant == "A"
    ids = pa.int64() if a else pa.int32()
    codes = pa.float64() if a else pa.int64()
    return pa.table(
        {
            "VendorID": pa.array(rng.integers(1, 3, rows), type=ids),
            "lpep_pickup_datetime": pa.array(pickup, pa.timestamp("us")),
            "lpep_dropoff_datetime": pa.array(dropoff, pa.timestamp("us")),
            "store_and_fwd_flag": _optional(
                np.full(rows, "N"), nulls, pa.string() if a else pa.large_string()
            ),
            "RatecodeID": _optional(np.ones(rows), nulls, codes),
            "PULocationID": pa.array(pu, type=ids),
            "DOLocationID": pa.array(do, type=ids),
            "passenger_count": _optional(rng.integers(1, 4, rows), nulls, codes),
            "trip_distance": pa.array(distance, pa.float64()),
            "fare_amount": pa.array(np.round(3 + 2.5 * distance, 2)),
            "ehail_fee": pa.nulls(rows, pa.null() if a else pa.float64()),
            "payment_type": _optional(rng.integers(1, 3, rows), nulls, codes),
            "trip_type": _optional(np.ones(rows), nulls, codes),
            "congestion_surcharge": _optional(np.zeros(rows), nulls, pa.float64()),
        }
    )


def _yellow(rng, rows, pickup, dropoff, pu, do, distance, nulls, variant):
    return pa.table(
        {
            "VendorID": pa.array(rng.integers(1, 3, rows), type=pa.int32()),
            "tpep_pickup_datetime": pa.array(pickup, pa.timestamp("us")),
            "tpep_dropoff_datetime": pa.array(dropoff, pa.timestamp("us")),
            "passenger_count": _optional(rng.integers(1, 4, rows), nulls, pa.int64()),
            "trip_distance": pa.array(distance, pa.float64()),
            "RatecodeID": _optional(np.ones(rows), nulls, pa.int64()),
            "store_and_fwd_flag": _optional(np.full(rows, "N"), nulls, pa.large_string()),
            "PULocationID": pa.array(pu, type=pa.int32()),
            "DOLocationID": pa.array(do, type=pa.int32()),
            "payment_type": pa.array(rng.integers(1, 3, rows), type=pa.int64()),
            "fare_amount": pa.array(np.round(3 + 2.5 * distance, 2)),
            "Airport_fee": _optional(np.zeros(rows), nulls, pa.float64()),
        }
    )


def _fhv(rng, rows, pickup, dropoff, pu, do, distance, nulls, variant):
    # fhv location ids are doubles with many nulls; there is no distance column.
    return pa.table(
        {
            "dispatching_base_num": pa.array(np.full(rows, "B00001")),
            "pickup_datetime": pa.array(pickup, pa.timestamp("us")),
            "dropOff_datetime": pa.array(dropoff, pa.timestamp("us")),
            "PUlocationID": _optional(pu.astype(float), nulls, pa.float64()),
            "DOlocationID": _optional(do.astype(float), rng.random(rows) < 0.2, pa.float64()),
            "SR_Flag": pa.nulls(rows, pa.int32()),
            "Affiliated_base_number": pa.array(np.full(rows, "B00001")),
        }
    )


def _fhvhv(rng, rows, pickup, dropoff, pu, do, distance, nulls, variant):
    return pa.table(
        {
            "hvfhs_license_num": pa.array(np.full(rows, "HV0003")),
            "dispatching_base_num": pa.array(np.full(rows, "B02764")),
            "request_datetime": pa.array(pickup - np.timedelta64(5, "m"), pa.timestamp("us")),
            "pickup_datetime": pa.array(pickup, pa.timestamp("us")),
            "dropoff_datetime": pa.array(dropoff, pa.timestamp("us")),
            "PULocationID": pa.array(pu, type=pa.int64()),
            "DOLocationID": pa.array(do, type=pa.int64()),
            "trip_miles": pa.array(distance, pa.float64()),
            "trip_time": pa.array(((dropoff - pickup) / np.timedelta64(1, "s")).astype(np.int64)),
            "base_passenger_fare": pa.array(np.round(5 + 2.5 * distance, 2)),
        }
    )


_LAYOUTS = {"green": _green, "yellow": _yellow, "fhv": _fhv, "fhvhv": _fhvhv}
