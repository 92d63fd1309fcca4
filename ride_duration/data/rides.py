"""Online rides as the model's columns: the rides of a request or a stream batch, checked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pyarrow as pa

from ride_duration.data import layouts, rules
from ride_duration.data.rules import UNKNOWN_LOCATION

RIDES_SCHEMA = pa.schema(
    [
        (layouts.PICKUP_LOCATION, pa.int64()),
        (layouts.DROPOFF_LOCATION, pa.int64()),
        (layouts.DISTANCE, pa.float64()),
    ]
)


def rides_table(rides: Sequence[Mapping[str, object]]) -> pa.Table:
    """Rides as the online modes receive them, checked by the batch rules (`rules.check_rides`),
    as the model's columns. The first ride that breaks a rule raises RideError naming its
    position and field (a malformed ride before a bad value)."""
    checked = rules.check_rides(rides)
    if checked.errors:
        raise checked.errors[0]
    return checked_table(checked)


def checked_table(checked: rules.CheckedRides) -> pa.Table:
    """The kept rides of `checked` as the model's columns (an unknown location is null)."""
    return pa.table(
        {
            layouts.PICKUP_LOCATION: pa.array(
                checked.pickup, mask=checked.pickup == UNKNOWN_LOCATION
            ),
            layouts.DROPOFF_LOCATION: pa.array(
                checked.dropoff, mask=checked.dropoff == UNKNOWN_LOCATION
            ),
            layouts.DISTANCE: pa.array(checked.distance),
        },
        schema=RIDES_SCHEMA,
    )
