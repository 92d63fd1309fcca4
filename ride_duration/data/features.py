"""Trip cleaning and model features, shared by training, batch scoring and the online modes.

A trip is kept when its pickup falls in the scored month, it lasted 1 to 60 minutes, and its
location ids and distance are usable; every other row is counted under the first reason that
rejects it. The model sees two features: `PU_DO` ("<pickup id>_<dropoff id>", -1 for an
unknown location) and `trip_distance`. A ride as the online modes receive it (no times) is
checked by the very same rules: `model_columns` decides for both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ride_duration.core.months import Month
from ride_duration.data import layouts, rules

MIN_DURATION_MINUTES = 1.0
MAX_DURATION_MINUTES = 60.0
UNKNOWN_LOCATION = rules.UNKNOWN_LOCATION

PU_DO = "PU_DO"
CATEGORICAL_FEATURES = (PU_DO,)
NUMERICAL_FEATURES = (layouts.DISTANCE,)
ALL_FEATURES = CATEGORICAL_FEATURES + NUMERICAL_FEATURES
# The canonical trip fields each feature is computed from.
FEATURE_SOURCES = {
    PU_DO: (layouts.PICKUP_LOCATION, layouts.DROPOFF_LOCATION),
    layouts.DISTANCE: (layouts.DISTANCE,),
}

ACTUAL_DURATION = "actual_duration"
ROW_NUMBER = "row_number"


class DropReason(StrEnum):
    """Why a row of the source file is not scored, in the order the checks run."""

    MISSING_DATETIME = "missing_datetime"
    PICKUP_OUTSIDE_MONTH = "pickup_outside_month"
    DURATION_OUT_OF_RANGE = "duration_out_of_range"
    INVALID_LOCATION = "invalid_location"
    INVALID_DISTANCE = "invalid_distance"


@dataclass
class PreparedTrips:
    """Trips that pass every check, and the count of rows dropped per reason."""

    table: pa.Table
    dropped: dict[str, int] = field(default_factory=dict)


def required_fields(features: tuple[str, ...] | frozenset[str]) -> list[str]:
    """The canonical trip fields needed to compute `features` and the actual duration."""
    fields = [layouts.PICKUP, layouts.DROPOFF]
    for feature in ALL_FEATURES:
        if feature in features:
            fields += [f for f in FEATURE_SOURCES[feature] if f not in fields]
    return fields


@dataclass(frozen=True)
class ModelColumns:
    """The feature columns of trips as the model reads them, and the rows they rule out."""

    columns: dict[str, pa.Array]  # location ids as int64 (null: unknown), distance as float64
    invalid_location: np.ndarray  # a location id that is no id (negative, 43.5, ...)
    invalid_distance: np.ndarray  # a distance that is null, NaN, infinite or negative


def model_columns(raw: pa.Table, source_names: dict[str, str] | None = None) -> ModelColumns:
    """Location ids and distance of trips (canonical names), cleaned by the product's rules.

    Ids of any integer width, floats with nulls and numeric text become int64; a null or NaN
    id is an unknown location, and a value that is not a whole number from 0 up rules its row
    out, never becoming a "43.0"-style key. A distance must be 0 or more and finite as float32
    (`ride_duration.data.rules`).
    `source_names` maps canonical names to the file's own, for error messages.
    """
    n = raw.num_rows
    named = (source_names or {}).get
    columns: dict[str, pa.Array] = {}
    invalid_location = np.zeros(n, dtype=bool)
    for name in (layouts.PICKUP_LOCATION, layouts.DROPOFF_LOCATION):
        if name in raw.column_names:
            ids, invalid = layouts.to_location_id(raw[name], named(name, name))
            columns[name] = ids
            invalid_location |= _mask(invalid)
    distance_ok = np.ones(n, dtype=bool)
    if layouts.DISTANCE in raw.column_names:
        distance = layouts.to_distance(
            raw[layouts.DISTANCE], named(layouts.DISTANCE, layouts.DISTANCE)
        )
        columns[layouts.DISTANCE] = distance
        values = distance.to_numpy(zero_copy_only=False)  # nulls become NaN
        distance_ok = rules.distance_ok(values)
    return ModelColumns(columns, invalid_location, ~distance_ok)


def prepare_trips(
    raw: pa.Table,
    month: Month,
    first_row: int = 0,
    source_names: dict[str, str] | None = None,
) -> PreparedTrips:
    """Clean one batch of a month's trips whose columns carry canonical names.

    `first_row` is the position of the batch's first row in the source file; each kept trip
    keeps its position as `row_number`, from which its ride id is derived. `source_names`
    maps canonical names to the file's own, for error messages.
    """
    n = raw.num_rows
    named = (source_names or {}).get
    pickup = layouts.to_timestamp(raw[layouts.PICKUP], named(layouts.PICKUP, layouts.PICKUP))
    dropoff = layouts.to_timestamp(raw[layouts.DROPOFF], named(layouts.DROPOFF, layouts.DROPOFF))
    features = model_columns(raw, source_names)
    columns: dict[str, pa.Array] = {layouts.PICKUP: pickup, **features.columns}
    invalid_location, distance_ok = features.invalid_location, ~features.invalid_distance

    start, end = month.bounds()
    pickup_us = _micros(pickup)
    dropoff_us = _micros(dropoff)
    missing_datetime = _mask(pc.is_null(pickup)) | _mask(pc.is_null(dropoff))
    outside_month = (pickup_us < _micros_of(start)) | (pickup_us >= _micros_of(end))
    duration = (dropoff_us - pickup_us) / 60e6
    out_of_range = (duration < MIN_DURATION_MINUTES) | (duration > MAX_DURATION_MINUTES)

    dropped: dict[str, int] = {}
    rejected = np.zeros(n, dtype=bool)
    for reason, mask in (
        (DropReason.MISSING_DATETIME, missing_datetime),
        (DropReason.PICKUP_OUTSIDE_MONTH, outside_month),
        (DropReason.DURATION_OUT_OF_RANGE, out_of_range),
        (DropReason.INVALID_LOCATION, invalid_location),
        (DropReason.INVALID_DISTANCE, ~distance_ok),
    ):
        newly = mask & ~rejected
        dropped[reason.value] = int(newly.sum())
        rejected |= newly

    keep = ~rejected
    columns[ACTUAL_DURATION] = pa.array(duration)
    columns[ROW_NUMBER] = pa.array(np.arange(first_row, first_row + n, dtype=np.int64))
    table = pa.table(columns).filter(pa.array(keep)) if rejected.any() else pa.table(columns)
    return PreparedTrips(table=table, dropped=dropped)


def pu_do(trips: pa.Table) -> pa.Array:
    """The `PU_DO` feature: "<pickup id>_<dropoff id>", with -1 for an unknown location."""
    parts = [
        pc.fill_null(trips[name], UNKNOWN_LOCATION).cast(pa.string())
        for name in (layouts.PICKUP_LOCATION, layouts.DROPOFF_LOCATION)
    ]
    return pc.binary_join_element_wise(*parts, "_")


def feature_records(
    trips: pa.Table, features: tuple[str, ...] = ALL_FEATURES
) -> list[dict[str, Any]]:
    """The model input as one dict per trip (what a DictVectorizer pipeline is fitted on)."""
    columns: dict[str, list[Any]] = {}
    if PU_DO in features:
        columns[PU_DO] = pu_do(trips).to_pylist()
    if layouts.DISTANCE in features:
        columns[layouts.DISTANCE] = trips[layouts.DISTANCE].to_pylist()
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def available_features(taxi_type: str) -> tuple[str, ...]:
    """The features a taxi type's trips can provide (fhv trips have no distance)."""
    columns = layouts.LAYOUTS[taxi_type].columns
    return tuple(
        feature
        for feature in ALL_FEATURES
        if all(source in columns for source in FEATURE_SOURCES[feature])
    )


def _mask(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=bool)


def _micros(timestamps: pa.Array) -> np.ndarray:
    """Microseconds since the epoch as int64; nulls become 0 (they are dropped anyway)."""
    micros: np.ndarray = pc.fill_null(timestamps.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
    return micros


def _micros_of(moment: datetime) -> int:
    return int(np.datetime64(moment, "us").astype(np.int64))


def location_ids(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A location column as int64 ids, a missing location as UNKNOWN_LOCATION."""
    ids: np.ndarray = pc.fill_null(column, UNKNOWN_LOCATION).to_numpy().astype(np.int64, copy=False)
    return ids
