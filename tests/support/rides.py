"""Rides and trips the unit tests share: generated months in canonical columns, one ride."""

from __future__ import annotations

import pyarrow as pa

from ride_duration.core.months import Month
from ride_duration.data import features, rules
from ride_duration.data.sources import canonical_columns
from ride_duration.model.resolve import ModelRef
from tests.support.tlc_fake import make_trips

MODEL = ModelRef(
    uri="models:/ride-duration@production",
    resolved_uri="models:/ride-duration/3",
    name="ride-duration",
    version="3",
    run_id="abc123",
)
RIDE = {"PULocationID": 130, "DOLocationID": 205, "trip_distance": 3.66}


def prepared(
    year: int, month: int, rows: int, taxi_type: str = "green", names=features.ALL_FEATURES
) -> pa.Table:
    """A generated month of `taxi_type`, cleaned as batch scoring cleans it."""
    raw = make_trips(taxi_type, year, month, rows=rows)
    return prepare(raw, taxi_type, year, month, names)


def prepare(raw: pa.Table, taxi_type: str, year: int, month: int, names=features.ALL_FEATURES):
    """A raw trip table in canonical columns, cleaned as batch scoring cleans it."""
    trips = canonical_columns(raw, taxi_type, features.required_fields(names))
    return features.prepare_trips(trips, Month(year, month)).table


def as_rides(trips: pa.Table) -> list[dict]:
    """Prepared trips as the rides an online client sends."""
    return [
        {name: row[name] for name in rules.RIDE_FIELDS}
        for row in trips.select(list(rules.RIDE_FIELDS)).to_pylist()
    ]
