"""TLC layouts and column conversions: `ride_duration.data.layouts`."""

from __future__ import annotations

import math
from datetime import datetime
from decimal import Decimal

import pyarrow as pa
import pytest

from ride_duration.core.errors import SchemaError
from ride_duration.data import layouts
from tests.support.tlc_fake import make_trips

ALL_FIELDS = [
    layouts.PICKUP,
    layouts.DROPOFF,
    layouts.PICKUP_LOCATION,
    layouts.DROPOFF_LOCATION,
    layouts.DISTANCE,
]
NO_DISTANCE = [layouts.PICKUP, layouts.DROPOFF, layouts.PICKUP_LOCATION, layouts.DROPOFF_LOCATION]


def columns_of(taxi_type: str) -> list[str]:
    return make_trips(taxi_type, 2021, 1, rows=5).column_names


# --- source_columns ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("taxi_type", "fields", "expected"),
    [
        (
            "green",
            ALL_FIELDS,
            {
                layouts.PICKUP: "lpep_pickup_datetime",
                layouts.DROPOFF: "lpep_dropoff_datetime",
                layouts.PICKUP_LOCATION: "PULocationID",
                layouts.DROPOFF_LOCATION: "DOLocationID",
                layouts.DISTANCE: "trip_distance",
            },
        ),
        (
            "yellow",
            ALL_FIELDS,
            {
                layouts.PICKUP: "tpep_pickup_datetime",
                layouts.DROPOFF: "tpep_dropoff_datetime",
                layouts.PICKUP_LOCATION: "PULocationID",
                layouts.DROPOFF_LOCATION: "DOLocationID",
                layouts.DISTANCE: "trip_distance",
            },
        ),
        (
            "fhv",
            NO_DISTANCE,
            {
                layouts.PICKUP: "pickup_datetime",
                layouts.DROPOFF: "dropOff_datetime",
                layouts.PICKUP_LOCATION: "PUlocationID",
                layouts.DROPOFF_LOCATION: "DOlocationID",
            },
        ),
        (
            "fhvhv",
            ALL_FIELDS,
            {
                layouts.PICKUP: "pickup_datetime",
                layouts.DROPOFF: "dropoff_datetime",
                layouts.PICKUP_LOCATION: "PULocationID",
                layouts.DROPOFF_LOCATION: "DOLocationID",
                layouts.DISTANCE: "trip_miles",
            },
        ),
        (
            "green",
            [layouts.PICKUP, layouts.DROPOFF],
            {layouts.PICKUP: "lpep_pickup_datetime", layouts.DROPOFF: "lpep_dropoff_datetime"},
        ),
    ],
)
def test_source_columns_of_each_taxi_type(taxi_type, fields, expected):
    found = layouts.source_columns(taxi_type, columns_of(taxi_type), fields)
    assert found == expected
    assert list(found) == fields  # in the order asked for


@pytest.mark.parametrize(
    ("taxi_type", "names", "expected"),
    [
        # fhv files of other eras spell the same columns with other cases
        (
            "fhv",
            [
                "dispatching_base_num",
                "pickup_datetime",
                "dropoff_datetime",
                "PULocationID",
                "DOLocationID",
            ],
            {
                layouts.PICKUP: "pickup_datetime",
                layouts.DROPOFF: "dropoff_datetime",
                layouts.PICKUP_LOCATION: "PULocationID",
                layouts.DROPOFF_LOCATION: "DOLocationID",
            },
        ),
        (
            "fhv",
            ["Pickup_DateTime", "DROPOFF_DATETIME", "pulocationid", "dolocationid"],
            {
                layouts.PICKUP: "Pickup_DateTime",
                layouts.DROPOFF: "DROPOFF_DATETIME",
                layouts.PICKUP_LOCATION: "pulocationid",
                layouts.DROPOFF_LOCATION: "dolocationid",
            },
        ),
        (
            "green",
            [
                "LPEP_PICKUP_DATETIME",
                "lpep_dropoff_datetime",
                "PUlocationID",
                "DOlocationid",
                "Trip_Distance",
            ],
            {
                layouts.PICKUP: "LPEP_PICKUP_DATETIME",
                layouts.DROPOFF: "lpep_dropoff_datetime",
                layouts.PICKUP_LOCATION: "PUlocationID",
                layouts.DROPOFF_LOCATION: "DOlocationid",
                layouts.DISTANCE: "Trip_Distance",
            },
        ),
    ],
)
def test_source_columns_match_names_case_insensitively(taxi_type, names, expected):
    fields = list(expected)
    assert layouts.source_columns(taxi_type, names, fields) == expected


@pytest.mark.parametrize(
    ("taxi_type", "removed", "fields"),
    [
        ("green", "lpep_pickup_datetime", ALL_FIELDS),
        ("green", "DOLocationID", ALL_FIELDS),
        ("green", "trip_distance", ALL_FIELDS),
        ("yellow", "tpep_dropoff_datetime", ALL_FIELDS),
        ("fhv", "PUlocationID", NO_DISTANCE),
        ("fhvhv", "trip_miles", ALL_FIELDS),
    ],
)
def test_a_missing_column_is_a_schema_error_naming_it(taxi_type, removed, fields):
    names = [name for name in columns_of(taxi_type) if name != removed]
    with pytest.raises(SchemaError, match=removed):
        layouts.source_columns(taxi_type, names, fields)


def test_a_column_the_model_does_not_need_may_be_missing():
    names = [name for name in columns_of("green") if name != "trip_distance"]
    assert layouts.DISTANCE not in layouts.source_columns("green", names, NO_DISTANCE)


@pytest.mark.parametrize(
    ("file_type", "scored_as", "fields"),
    [
        ("yellow", "green", ALL_FIELDS),
        ("green", "yellow", ALL_FIELDS),
        ("fhv", "fhvhv", [*NO_DISTANCE, layouts.DISTANCE]),
        ("fhv", "green", NO_DISTANCE),
    ],
)
def test_a_file_of_another_taxi_type_says_what_it_looks_like(file_type, scored_as, fields):
    with pytest.raises(SchemaError) as raised:
        layouts.source_columns(scored_as, columns_of(file_type), fields)
    message = str(raised.value)
    assert f"looks like a {file_type} file" in message
    assert "INPUT_URI_TEMPLATE" in message


@pytest.mark.parametrize("scored_as", ["green", "yellow"])
def test_an_fhvhv_file_scored_as_another_type_is_named_fhvhv(scored_as):
    with pytest.raises(SchemaError, match="looks like a fhvhv file"):
        layouts.source_columns(scored_as, columns_of("fhvhv"), ALL_FIELDS)


def test_a_file_of_no_known_type_gives_no_hint():
    with pytest.raises(SchemaError) as raised:
        layouts.source_columns("green", ["a", "b", "trip_distance"], ALL_FIELDS)
    assert "looks like" not in str(raised.value)
    assert "lpep_pickup_datetime" in str(raised.value)


@pytest.mark.parametrize(
    "names", [[], ["pickup_datetime", "dropOff_datetime", "PUlocationID", "DOlocationID"]]
)
def test_fhv_with_a_model_needing_trip_distance_is_a_schema_error(names):
    with pytest.raises(SchemaError, match="trip_distance") as raised:
        layouts.source_columns("fhv", names, ALL_FIELDS)
    assert "fhv" in str(raised.value)


# --- to_location_id ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "ids", "invalid"),
    [
        (pa.array([43, 1, 265], pa.int32()), [43, 1, 265], [False, False, False]),
        (pa.array([43, None, 0], pa.int64()), [43, None, 0], [False, False, False]),
        (pa.array([43, -3], pa.int64()), [43, -3], [False, True]),
        (pa.array([43, 7], pa.int16()), [43, 7], [False, False]),
        (pa.array([43, 7], pa.uint8()), [43, 7], [False, False]),
        (pa.array([43.0, None, 264.0], pa.float64()), [43, None, 264], [False, False, False]),
        (pa.array([43.0, 7.0], pa.float32()), [43, 7], [False, False]),
        (pa.array([43.5, -3.0, 1e300], pa.float64()), [None, None, None], [True, True, True]),
        (
            pa.array([43.0, 43.5, None, -3.0], pa.float64()),
            [43, None, None, None],
            [False, True, False, True],
        ),
        (pa.array(["43", "43.0", None], pa.string()), [43, 43, None], [False, False, False]),
        (pa.array(["43.5", "-3", "7"], pa.large_string()), [None, None, 7], [True, True, False]),
        (pa.nulls(3), [None, None, None], [False, False, False]),
        (
            pa.chunked_array([pa.array([1.0, None]), pa.array([2.0])]),
            [1, None, 2],
            [False, False, False],
        ),
    ],
)
def test_to_location_id(column, ids, invalid):
    values, mask = layouts.to_location_id(column, "PULocationID")
    assert values.type == pa.int64()
    assert mask.type == pa.bool_()
    assert mask.to_pylist() == invalid
    # what an invalid value becomes is unspecified: it is dropped as invalid_location
    kept = [value for value, bad in zip(values.to_pylist(), invalid, strict=True) if not bad]
    assert kept == [value for value, bad in zip(ids, invalid, strict=True) if not bad]


def test_to_location_id_treats_nan_as_no_id():
    values, mask = layouts.to_location_id(pa.array([43.0, math.nan], pa.float64()), "PULocationID")
    assert values.to_pylist() == [43, None]
    assert mask.to_pylist() == [False, True]


@pytest.mark.parametrize(
    "column",
    [
        pa.array(["43", "Manhattan"]),
        pa.array([True, False]),
        pa.array([datetime(2021, 1, 1)]),
    ],
)
def test_to_location_id_rejects_columns_that_hold_no_ids(column):
    with pytest.raises(SchemaError, match="DOLocationID"):
        layouts.to_location_id(column, "DOLocationID")


# --- to_timestamp --------------------------------------------------------------------------

MARCH_1 = datetime(2021, 3, 1, 10, 15, 30)


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        (pa.array([MARCH_1, None], pa.timestamp("us")), [MARCH_1, None]),
        (pa.array([MARCH_1, None], pa.timestamp("ns")), [MARCH_1, None]),
        (pa.array([MARCH_1], pa.timestamp("ms")), [MARCH_1]),
        (pa.array([MARCH_1], pa.timestamp("s")), [MARCH_1]),
        # an instant tagged with a zone becomes New York wall-clock time
        (
            pa.array([datetime(2021, 3, 1, 15, 15, 30)], pa.timestamp("us", tz="UTC")).cast(
                pa.timestamp("ns", tz="America/New_York")
            ),
            [MARCH_1],
        ),
        (
            pa.array([datetime(2021, 7, 1, 14, 0)], pa.timestamp("us", tz="UTC")).cast(
                pa.timestamp("us", tz="America/New_York")
            ),
            [datetime(2021, 7, 1, 10, 0)],
        ),
        (pa.array(["2021-03-01 10:15:30", None]), [MARCH_1, None]),
        (pa.array(["2021-03-01T10:15:30"], pa.large_string()), [MARCH_1]),
        (pa.nulls(2), [None, None]),
        (pa.chunked_array([pa.array([MARCH_1], pa.timestamp("ns"))]), [MARCH_1]),
    ],
)
def test_to_timestamp(column, expected):
    converted = layouts.to_timestamp(column, "pickup_datetime")
    assert converted.type == pa.timestamp("us")
    assert converted.to_pylist() == expected


def test_to_timestamp_truncates_nanoseconds():
    column = pa.array([1_614_593_730_000_000_001], pa.timestamp("ns"))
    assert layouts.to_timestamp(column, "pickup_datetime").to_pylist() == [
        datetime(2021, 3, 1, 10, 15, 30)
    ]


@pytest.mark.parametrize(
    "column",
    [pa.array(["yesterday"]), pa.array([1, 2]), pa.array([1.5]), pa.array([MARCH_1.date()])],
)
def test_to_timestamp_rejects_columns_that_hold_no_datetimes(column):
    with pytest.raises(SchemaError, match="dropoff_datetime"):
        layouts.to_timestamp(column, "dropoff_datetime")


# --- to_distance ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        (pa.array([1.5, None, 0.0], pa.float64()), [1.5, None, 0.0]),
        (pa.array([1.5], pa.float32()), [1.5]),
        (pa.array([2, None], pa.int32()), [2.0, None]),
        (pa.array([Decimal("1.25")], pa.decimal128(5, 2)), [1.25]),
        (pa.array(["1.5", None]), [1.5, None]),
        (pa.nulls(2), [None, None]),
    ],
)
def test_to_distance(column, expected):
    converted = layouts.to_distance(column, "trip_distance")
    assert converted.type == pa.float64()
    assert converted.to_pylist() == expected


def test_to_distance_keeps_nan_and_infinity_for_the_checks_to_drop():
    converted = layouts.to_distance(
        pa.array([math.nan, math.inf, -1.0]), "trip_distance"
    ).to_pylist()
    assert math.isnan(converted[0])
    assert converted[1:] == [math.inf, -1.0]


@pytest.mark.parametrize("column", [pa.array(["far"]), pa.array([True]), pa.array([MARCH_1])])
def test_to_distance_rejects_columns_that_hold_no_numbers(column):
    with pytest.raises(SchemaError, match="trip_distance"):
        layouts.to_distance(column, "trip_distance")
