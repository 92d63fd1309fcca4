"""The rules a ride must keep to be scored, one set for trips in batch and rides online.

A location id is a whole number from 0 up, or missing (an unknown location); a distance is a
number of miles, 0 or more, that stays finite when cast to float32, as scikit-learn casts it
(beyond float32's range the forest would see infinity, which scikit-learn refuses). NaN is no
id and no distance. Batch applies these rules to arrow columns (`ride_duration.data.features`); the
online modes apply them here to the values of JSON rides: plain Python values and numpy, so
that serving needs neither pyarrow nor pandas. A ride's id, which the online modes echo and
the stream uses as a partition key, has its rule here too.
"""

from __future__ import annotations

import contextlib
import re
import reprlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ride_duration.core.errors import RideError

PICKUP_LOCATION = "PULocationID"
DROPOFF_LOCATION = "DOLocationID"
DISTANCE = "trip_distance"
RIDE_FIELDS = (PICKUP_LOCATION, DROPOFF_LOCATION, DISTANCE)
UNKNOWN_LOCATION = -1

MAX_FLOAT_ID = 2.0**53  # beyond, a float no longer holds every whole number
MAX_RIDE_ID_CHARACTERS = 256  # a Kinesis partition key's limit
# Numeric text as batch reads it (arrow's cast to float64), minus what the rules refuse anyway
# (nan, inf): digits in ASCII, an optional sign, point and exponent, nothing around them.
_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_INT64_MAX = 2**63 - 1

RULES = {
    PICKUP_LOCATION: "must be a whole number from 0 up, or null for an unknown location",
    DROPOFF_LOCATION: "must be a whole number from 0 up, or null for an unknown location",
    DISTANCE: "must be a finite number of miles, 0 or more",
}

_SHOWN = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = 60
_SHOWN.maxlong = 40
_SHOWN.maxlevel = 3


def shown(value: object) -> str:
    """A value as error messages and logs show it: its repr, cut short (a ride may carry MBs)."""
    try:
        return _SHOWN.repr(value)
    except ValueError:  # an int too long to write out (Python's 4,300-digit limit), or holding one
        if isinstance(value, int):
            return f"<{type(value).__name__} of {value.bit_length()} bits>"
        return f"<{type(value).__name__} holding an int too long to write out>"


def location_ok(ids: np.ndarray) -> np.ndarray:
    """Which location ids keep the rule: integers from 0 up, floats whole from 0 below 2**53."""
    if ids.dtype.kind in "iu":
        return ids >= 0
    with np.errstate(invalid="ignore"):
        whole: np.ndarray = (np.floor(ids) == ids) & (ids >= 0) & (ids < MAX_FLOAT_ID)
        return whole


def distance_ok(distance: np.ndarray) -> np.ndarray:
    """Which distances keep the rule: 0 or more, and finite once cast to float32."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.isfinite(distance.astype(np.float32)) & (distance >= 0)


@dataclass(frozen=True)
class CheckedRides:
    """The rides that keep the rules, as the model's columns, and the first broken rule of
    each other ride (malformed rides first, then bad values, each in ride order)."""

    kept: list[int]  # positions of the kept rides in the request or batch
    pickup: np.ndarray  # int64, UNKNOWN_LOCATION where missing
    dropoff: np.ndarray
    distance: np.ndarray  # float64
    errors: list[RideError]


def check_rides(rides: Sequence[object]) -> CheckedRides:
    """Check rides as the online modes receive them: mappings with the three ride fields
    (other keys are ignored). Each field's values are checked together, a value at a time only
    where its type calls for it (text), so a few odd values cost what a few values cost."""
    malformed: list[RideError] = []
    shaped: list[int] = []
    shaped_rides: list[Mapping[str, object]] = []
    for index, ride in enumerate(rides):
        if not isinstance(ride, Mapping):
            message = "a ride must be an object with " + ", ".join(RIDE_FIELDS)
            malformed.append(RideError(index, None, message))
            continue
        missing = next((name for name in RIDE_FIELDS if name not in ride), None)
        if missing is not None:
            malformed.append(RideError(index, missing, f"{missing} is missing"))
            continue
        shaped.append(index)
        shaped_rides.append(ride)
    values = {name: [ride[name] for ride in shaped_rides] for name in RIDE_FIELDS}
    pickup, pickup_ok = _locations(values[PICKUP_LOCATION])
    dropoff, dropoff_ok = _locations(values[DROPOFF_LOCATION])
    distance, distance_good = _distances(values[DISTANCE])
    bad_values = []
    for position in np.flatnonzero(~(pickup_ok & dropoff_ok & distance_good)).tolist():
        name = next(
            name
            for name, ok in zip(RIDE_FIELDS, (pickup_ok, dropoff_ok, distance_good), strict=True)
            if not ok[position]
        )
        value = values[name][position]
        bad_values.append(
            RideError(shaped[position], name, f"{name} {RULES[name]}, got {shown(value)}")
        )
    keep = pickup_ok & dropoff_ok & distance_good
    return CheckedRides(
        kept=[index for index, kept in zip(shaped, keep.tolist(), strict=True) if kept],
        pickup=pickup[keep],
        dropoff=dropoff[keep],
        distance=distance[keep],
        errors=malformed + bad_values,
    )


def _locations(values: list[object]) -> tuple[np.ndarray, np.ndarray]:
    """Location ids as int64 (UNKNOWN_LOCATION where missing) and which keep the rule.

    Integers keep every digit (batch reads int64 columns); floats and numeric text are read
    as float64, as batch casts them.
    """
    types = set(map(type, values))
    if types <= {int}:  # the usual request: one array, no loop
        try:
            ids = np.array(values, dtype=np.int64)
        except OverflowError:
            pass
        else:
            return ids, ids >= 0
    n = len(values)
    ids = np.full(n, UNKNOWN_LOCATION, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    floats = np.full(n, np.nan)
    for i, value in enumerate(values):
        if type(value) is int:
            if 0 <= value <= _INT64_MAX:
                ids[i], ok[i] = value, True
        elif value is None:
            ok[i] = True
        elif type(value) is float:
            floats[i] = value
        elif type(value) is str and _NUMBER.fullmatch(value):
            floats[i] = float(value)
    whole = location_ok(floats)
    ids[whole] = floats[whole].astype(np.int64)
    return ids, ok | whole


def _distances(values: list[object]) -> tuple[np.ndarray, np.ndarray]:
    """Distances as float64 and which keep the rule (a missing distance does not)."""
    if set(map(type, values)) <= {int, float}:
        try:
            distance = np.array(values, dtype=np.float64)
        except OverflowError:  # an int beyond float64: no distance
            pass
        else:
            return distance, distance_ok(distance)
    distance = np.full(len(values), np.nan)
    for i, value in enumerate(values):
        if type(value) is float or type(value) is int:
            with contextlib.suppress(OverflowError):  # an int beyond float64: no distance
                distance[i] = value
        elif type(value) is str and _NUMBER.fullmatch(value):
            distance[i] = float(value)
    return distance, distance_ok(distance)


def ride_id(value: object) -> str | int | None:
    """A ride's optional id, as the online modes echo it and the stream keys its record by: a
    non-empty string or a whole number (156.0 is 156), at most 256 characters as text;
    ValueError for anything else."""
    if value is None:
        return None
    if isinstance(value, float) and np.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"ride_id must be a string or a whole number, got {shown(value)}")
    text = (
        str(value) if not isinstance(value, int) or abs(value) < 10**MAX_RIDE_ID_CHARACTERS else ""
    )
    if not text or len(text) > MAX_RIDE_ID_CHARACTERS:
        raise ValueError(
            f"ride_id must be 1 to {MAX_RIDE_ID_CHARACTERS} characters as text, got {shown(value)}"
        )
    return value
