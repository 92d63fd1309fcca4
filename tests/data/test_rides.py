"""Online rides as the model's columns (`data.rides`), kept or refused by batch's rules."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pyarrow as pa
import pytest

from ride_duration.core.errors import RideError, SchemaError
from ride_duration.core.months import Month
from ride_duration.data import features, layouts, rules
from ride_duration.data.rides import RIDES_SCHEMA, checked_table, rides_table
from tests.support.rides import RIDE

NOON = datetime(2021, 3, 10, 12, 0)


def batch_verdict(field: str, value: object) -> str:
    """What batch scoring does with a trip whose `field` holds `value`: kept, a drop reason, or
    refused (a column arrow cannot hold, or text that is no number: the whole file is refused)."""
    row = {"PULocationID": 43, "DOLocationID": 151, "trip_distance": 2.5, field: value}
    try:
        columns = {name: pa.array([row[name]]) for name in rules.RIDE_FIELDS}
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return "refused"
    raw = pa.table(
        {
            layouts.PICKUP: pa.array([NOON], pa.timestamp("us")),
            layouts.DROPOFF: pa.array([NOON + timedelta(minutes=10)], pa.timestamp("us")),
            **columns,
        }
    )
    try:
        prepared = features.prepare_trips(raw, Month(2021, 3))
    except SchemaError:
        return "refused"
    dropped = [reason for reason, count in prepared.dropped.items() if count]
    return dropped[0] if dropped else "kept"


LOCATION_CASES = [
    (130, "kept"),
    (130.0, "kept"),  # a float id is an id: "130", never "130.0"
    (None, "kept"),  # an unknown location, -1
    ("130", "kept"),  # numeric text, as batch reads it
    ("+130", "kept"),
    ("1e2", "kept"),
    ("00130", "kept"),
    (0, "kept"),
    (2**62, "kept"),
    (-0.0, "kept"),
    (130.5, "invalid_location"),
    (-3, "invalid_location"),
    (-1.0, "invalid_location"),
    (math.nan, "invalid_location"),  # no id: pandas writes a missing id as null, not NaN
    ("nan", "invalid_location"),
    (math.inf, "invalid_location"),
    (1e300, "invalid_location"),
    (2.0**53, "invalid_location"),
    (" 130", "refused"),
    ("1_0", "refused"),
    ("0x10", "refused"),
    ("\u0661\u0662", "refused"),  # digits, but not ASCII ones
    ("", "refused"),
    (True, "refused"),
    ([1], "refused"),
    ({"id": 1}, "refused"),
    (2**64, "refused"),
]


DISTANCE_CASES = [
    (0, "kept"),
    (3.66, "kept"),
    ("2.5", "kept"),
    (3.4028234e38, "kept"),  # float32's largest
    (-0.1, "invalid_distance"),
    (math.nan, "invalid_distance"),
    ("nan", "invalid_distance"),
    (math.inf, "invalid_distance"),
    (None, "invalid_distance"),
    (1e39, "invalid_distance"),  # beyond float32: scikit-learn would see infinity
    (1e308, "invalid_distance"),
    ("far", "refused"),
    (True, "refused"),
    (10**400, "refused"),
]


@pytest.mark.parametrize(
    ("field", "value", "verdict"),
    [
        *(("PULocationID", value, verdict) for value, verdict in LOCATION_CASES),
        *(("DOLocationID", value, verdict) for value, verdict in LOCATION_CASES),
        *(("trip_distance", value, verdict) for value, verdict in DISTANCE_CASES),
    ],
)
def test_a_ride_online_follows_the_rules_a_trip_follows_in_batch(field, value, verdict):
    assert batch_verdict(field, value) == verdict
    ride = {"PULocationID": 43, "DOLocationID": 151, "trip_distance": 2.5, field: value}
    if verdict == "kept":
        table = rides_table([ride])
        assert table.schema.field(field).type in (pa.int64(), pa.float64())
        if field != "trip_distance":
            batch_id = features.model_columns(pa.table({field: pa.array([value])})).columns[field]
            assert table[field].to_pylist() == batch_id.to_pylist()
    else:
        with pytest.raises(RideError) as raised:
            rides_table([ride])
        assert (raised.value.index, raised.value.field) == (0, field)
        assert str(raised.value).startswith(f"{field} must be ")


@pytest.mark.parametrize(
    ("rides", "index", "field", "says"),
    [
        ([{"DOLocationID": 1, "trip_distance": 1.0}], 0, "PULocationID", "PULocationID is missing"),
        ([RIDE, {**RIDE, "trip_distance": "far"}], 1, "trip_distance", "trip_distance must be"),
        ([RIDE, RIDE, {**RIDE, "DOLocationID": True}], 2, "DOLocationID", "DOLocationID must be"),
        ([RIDE, [1, 2, 3]], 1, None, "a ride must be an object"),
        ([{**RIDE, "PULocationID": [1]}], 0, "PULocationID", "PULocationID must be"),
    ],
)
def test_the_first_ride_that_breaks_a_rule_is_named(rides, index, field, says):
    with pytest.raises(RideError) as raised:
        rides_table(rides)
    assert (raised.value.index, raised.value.field) == (index, field)
    assert says in str(raised.value)


@pytest.mark.parametrize(
    ("rides", "kept", "refused"),
    [
        ([RIDE, {**RIDE, "trip_distance": -1}, RIDE], [130, 130], [(1, "trip_distance")]),
        (
            [{**RIDE, "trip_distance": "far"}, [1], {**RIDE, "PULocationID": 7}],
            [7],
            [(1, None), (0, "trip_distance")],  # the malformed ride first
        ),
        (
            [RIDE, {**RIDE, "PULocationID": "131"}, {"DOLocationID": 1}],
            [130, 131],
            [(2, "PULocationID")],
        ),
        ([{**RIDE, "DOLocationID": -3}], [], [(0, "DOLocationID")]),
    ],
)
def test_a_batch_keeps_its_good_rides_and_names_each_bad_one(rides, kept, refused):
    checked = rules.check_rides(rides)
    table = checked_table(checked)
    assert table["PULocationID"].to_pylist() == kept
    assert table.schema == RIDES_SCHEMA
    assert [(error.index, error.field) for error in checked.errors] == refused


@pytest.mark.parametrize(
    "value",
    ["x" * 900_000, [[[[[[[[[[1]]]]]]]]]], 10**299, {"a": "b" * 10_000}],
)
def test_a_refused_value_is_shown_cut_short(value):
    [error] = rules.check_rides([{**RIDE, "trip_distance": value}]).errors
    assert len(str(error)) < 200


def test_rides_of_mixed_but_valid_types_are_scored_one_by_one():
    table = rides_table([RIDE, {**RIDE, "PULocationID": "131"}])
    assert table["PULocationID"].to_pylist() == [130, 131]


def test_unknown_fields_are_ignored_and_unknown_locations_are_minus_one():
    table = rides_table([{**RIDE, "PULocationID": None, "ride_id": 156, "extra": "x"}])
    assert table.column_names == list(rules.RIDE_FIELDS)
    assert features.pu_do(table).to_pylist() == ["-1_205"]
