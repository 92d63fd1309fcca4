"""TLC trip layouts: which source columns of each taxi type hold the canonical trip fields.

Canonical fields: `pickup_datetime`, `dropoff_datetime`, `PULocationID`, `DOLocationID` and
`trip_distance` (miles; fhv files have none). Source names are compared case-insensitively,
because the TLC has changed their case over the years (`DOlocationID`, `dropOff_datetime`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ride_duration.core.errors import SchemaError
from ride_duration.data import rules

PICKUP = "pickup_datetime"
DROPOFF = "dropoff_datetime"
# The ride's own fields are named by its rules, which the serving install reads without pyarrow.
PICKUP_LOCATION = rules.PICKUP_LOCATION
DROPOFF_LOCATION = rules.DROPOFF_LOCATION
DISTANCE = rules.DISTANCE


@dataclass(frozen=True)
class TripLayout:
    """Source column names of one taxi type, keyed by canonical field."""

    taxi_type: str
    columns: dict[str, str]

    def find(self, names: list[str]) -> tuple[dict[str, str], list[str]]:
        """Match canonical fields to `names` (a file's columns); return (found, missing)."""
        by_lower = {name.lower(): name for name in names}
        found, missing = {}, []
        for field, source in self.columns.items():
            if source.lower() in by_lower:
                found[field] = by_lower[source.lower()]
            else:
                missing.append(source)
        return found, missing


LAYOUTS: dict[str, TripLayout] = {
    "green": TripLayout(
        "green",
        {
            PICKUP: "lpep_pickup_datetime",
            DROPOFF: "lpep_dropoff_datetime",
            PICKUP_LOCATION: "PULocationID",
            DROPOFF_LOCATION: "DOLocationID",
            DISTANCE: "trip_distance",
        },
    ),
    "yellow": TripLayout(
        "yellow",
        {
            PICKUP: "tpep_pickup_datetime",
            DROPOFF: "tpep_dropoff_datetime",
            PICKUP_LOCATION: "PULocationID",
            DROPOFF_LOCATION: "DOLocationID",
            DISTANCE: "trip_distance",
        },
    ),
    "fhv": TripLayout(
        "fhv",
        {
            PICKUP: "pickup_datetime",
            DROPOFF: "dropOff_datetime",
            PICKUP_LOCATION: "PUlocationID",
            DROPOFF_LOCATION: "DOlocationID",
        },
    ),
    "fhvhv": TripLayout(
        "fhvhv",
        {
            PICKUP: "pickup_datetime",
            DROPOFF: "dropoff_datetime",
            PICKUP_LOCATION: "PULocationID",
            DROPOFF_LOCATION: "DOLocationID",
            DISTANCE: "trip_miles",
        },
    ),
}


def lacking_fields(taxi_type: str, fields: list[str]) -> str:
    """What `taxi_type`'s trips lack of `fields`, as one line ("" when they have them all)."""
    unknown = [field for field in fields if field not in LAYOUTS[taxi_type].columns]
    if not unknown:
        return ""
    return (
        f"{taxi_type} trips have no {', '.join(unknown)} column, but the model needs it: "
        f"score {taxi_type} with a model trained without {', '.join(unknown)}"
    )


def source_columns(taxi_type: str, names: list[str], fields: list[str]) -> dict[str, str]:
    """Map the canonical `fields` to the file's column names, or explain what is missing."""
    layout = LAYOUTS[taxi_type]
    lacking = lacking_fields(taxi_type, fields)
    if lacking:
        raise SchemaError(lacking)
    found, _ = layout.find(names)
    missing = [layout.columns[f] for f in fields if f not in found]
    if missing:
        hint = _looks_like(names, taxi_type)
        raise SchemaError(
            f"the {taxi_type} trip file lacks column(s) {', '.join(missing)}"
            + (
                f"; it looks like a {hint} file: check the taxi type and INPUT_URI_TEMPLATE"
                if hint
                else ""
            )
        )
    return {field: found[field] for field in fields}


def _looks_like(names: list[str], expected: str) -> str | None:
    """The other taxi type whose layout the columns match completely, if any.

    fhvhv files also hold every fhv column, so the fullest complete match wins.
    """
    matches = [
        layout
        for taxi_type, layout in LAYOUTS.items()
        if taxi_type != expected and not layout.find(names)[1]
    ]
    return max(matches, key=lambda layout: len(layout.columns)).taxi_type if matches else None


def to_timestamp(column: pa.ChunkedArray | pa.Array, name: str) -> pa.Array:
    """A pickup/dropoff column as naive local `timestamp[us]` (TLC times are New York time)."""
    column = _combine(column)
    kind = column.type
    if pa.types.is_timestamp(kind):
        if kind.tz is not None:
            column = pc.local_timestamp(column)
        # Trip times are whole seconds; nanosecond files are truncated, never rejected.
        return column.cast(pa.timestamp("us"), safe=False)
    if pa.types.is_null(kind):
        return pa.nulls(len(column), pa.timestamp("us"))
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        try:
            return column.cast(pa.timestamp("us"))
        except pa.ArrowInvalid:
            raise SchemaError(f"column {name} holds text that is not a date-time") from None
    raise SchemaError(f"column {name} has type {kind}, expected a timestamp")


def to_location_id(column: pa.ChunkedArray | pa.Array, name: str) -> tuple[pa.Array, pa.Array]:
    """A location id column as int64 (nulls kept) and a mask of non-null values that are not ids.

    Integer columns of any width, float columns (ids with nulls in some eras) and numeric text
    are accepted; a value that breaks `rules.location_ok` (negative, 43.5, NaN, beyond int64)
    counts as invalid instead of becoming a "43.0"-style key.
    """
    column = _combine(column)
    kind = column.type
    if pa.types.is_null(kind):
        return pa.nulls(len(column), pa.int64()), pa.array(np.zeros(len(column), dtype=bool))
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        try:
            column = column.cast(pa.float64())
        except pa.ArrowInvalid:
            raise SchemaError(f"column {name} holds text that is not a location id") from None
        kind = column.type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
        raise SchemaError(f"column {name} has type {kind}, expected integer location ids")
    missing = np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    values = pc.fill_null(column, 0).to_numpy(zero_copy_only=False)
    fits = np.ones(len(values), dtype=bool)
    if values.dtype == np.uint64:  # beyond int64 is no location id
        fits = values <= np.uint64(2**63 - 1)
        values = np.where(fits, values, 0).astype(np.int64)
    elif values.dtype.kind in "iu":
        values = values.astype(np.int64)
    else:
        values = values.astype(np.float64)
    valid = fits & rules.location_ok(values) & ~missing
    ids = np.where(valid, values, 0).astype(np.int64)
    return pa.array(ids, mask=~valid), pa.array(~valid & ~missing)


def to_distance(column: pa.ChunkedArray | pa.Array, name: str) -> pa.Array:
    """A distance column as float64 (nulls kept)."""
    column = _combine(column)
    kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind):
        return column.cast(pa.float64())
    if pa.types.is_decimal(kind):
        return column.cast(pa.float64())
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        try:
            return column.cast(pa.float64())
        except pa.ArrowInvalid:
            raise SchemaError(f"column {name} holds text that is not a number") from None
    raise SchemaError(f"column {name} has type {kind}, expected a number")


def _combine(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """One array, with dictionary-encoded columns (pandas categories) decoded."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return column.dictionary_decode() if pa.types.is_dictionary(column.type) else column
