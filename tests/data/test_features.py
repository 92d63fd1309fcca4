"""Trip cleaning and model features: `ride_duration.data.features`."""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta

import pyarrow as pa
import pytest

from ride_duration.core.months import Month
from ride_duration.data import features, layouts
from ride_duration.data.sources import canonical_columns
from ride_duration.data.taxi_types import TAXI_TYPES
from tests.support.tlc_fake import make_trips

REASONS = [reason.value for reason in features.DropReason]
NOON = datetime(2021, 3, 10, 12, 0)


def raw_trips(rows: list[dict]) -> pa.Table:
    """A batch with canonical column names; each row may override the defaults of `trip`."""
    full = [trip(**row) for row in rows]

    def column(name: str, default_type: pa.DataType) -> pa.Array:
        values = [row[name] for row in full]
        floats = any(isinstance(value, float) for value in values)
        return pa.array(values, pa.float64() if floats else default_type)

    return pa.table(
        {
            layouts.PICKUP: pa.array([row[layouts.PICKUP] for row in full], pa.timestamp("us")),
            layouts.DROPOFF: pa.array([row[layouts.DROPOFF] for row in full], pa.timestamp("us")),
            layouts.PICKUP_LOCATION: column(layouts.PICKUP_LOCATION, pa.int64()),
            layouts.DROPOFF_LOCATION: column(layouts.DROPOFF_LOCATION, pa.int64()),
            layouts.DISTANCE: column(layouts.DISTANCE, pa.float64()),
        }
    )


def trip(
    pickup: datetime | None = NOON,
    minutes: float | None = 10.0,
    pu: float | None = 43,
    do: float | None = 151,
    distance: float | None = 2.5,
) -> dict:
    dropoff = None if pickup is None or minutes is None else pickup + timedelta(minutes=minutes)
    return {
        layouts.PICKUP: pickup,
        layouts.DROPOFF: dropoff,
        layouts.PICKUP_LOCATION: pu,
        layouts.DROPOFF_LOCATION: do,
        layouts.DISTANCE: distance,
    }


def counts(**dropped: int) -> dict[str, int]:
    return {reason: dropped.get(reason, 0) for reason in REASONS}


def canonical(raw: pa.Table, taxi_type: str, names: tuple[str, ...]) -> pa.Table:
    """A generated TLC table with only the needed columns, under canonical names."""
    return canonical_columns(raw, taxi_type, features.required_fields(names))


# --- prepare_trips: one row, one verdict ---------------------------------------------------

KEPT = counts()


@pytest.mark.parametrize(
    ("row", "dropped"),
    [
        pytest.param({}, KEPT, id="ordinary"),
        pytest.param({"pickup": None}, counts(missing_datetime=1), id="no-pickup"),
        pytest.param({"minutes": None}, counts(missing_datetime=1), id="no-dropoff"),
        pytest.param(
            {"pickup": datetime(2021, 2, 10, 12)}, counts(pickup_outside_month=1), id="february"
        ),
        pytest.param(
            {"pickup": datetime(2009, 1, 1)}, counts(pickup_outside_month=1), id="year-2009"
        ),
        pytest.param({"minutes": 0.5}, counts(duration_out_of_range=1), id="half-a-minute"),
        pytest.param({"minutes": 0.0}, counts(duration_out_of_range=1), id="zero-minutes"),
        pytest.param({"minutes": 61.0}, counts(duration_out_of_range=1), id="61-minutes"),
        pytest.param({"minutes": -5.0}, counts(duration_out_of_range=1), id="negative"),
        pytest.param({"minutes": 1.0}, KEPT, id="exactly-1-minute"),
        pytest.param({"minutes": 60.0}, KEPT, id="exactly-60-minutes"),
        pytest.param(
            {"minutes": 1.0 - 1 / 60e6}, counts(duration_out_of_range=1), id="1-minute-less-1us"
        ),
        pytest.param(
            {"minutes": 60.0 + 1 / 60e6}, counts(duration_out_of_range=1), id="60-minutes-plus-1us"
        ),
        pytest.param({"pu": -3}, counts(invalid_location=1), id="negative-pickup-id"),
        pytest.param({"do": 43.5}, counts(invalid_location=1), id="fractional-dropoff-id"),
        pytest.param({"pu": 43.0, "do": 151.0}, KEPT, id="whole-float-ids"),
        pytest.param({"pu": None}, KEPT, id="unknown-pickup-kept"),
        pytest.param({"pu": None, "do": None}, KEPT, id="unknown-both-kept"),
        pytest.param({"pu": 0}, KEPT, id="id-zero"),
        pytest.param({"distance": math.nan}, counts(invalid_distance=1), id="nan-distance"),
        pytest.param({"distance": math.inf}, counts(invalid_distance=1), id="inf-distance"),
        pytest.param({"distance": -0.1}, counts(invalid_distance=1), id="negative-distance"),
        pytest.param({"distance": None}, counts(invalid_distance=1), id="null-distance"),
        pytest.param({"distance": 0.0}, KEPT, id="zero-distance"),
        # a row failing several checks counts once, under the first check that rejects it
        pytest.param(
            {"minutes": None, "pu": -3, "distance": math.nan},
            counts(missing_datetime=1),
            id="missing-before-all",
        ),
        pytest.param(
            {"pickup": datetime(2021, 4, 2), "minutes": 300.0, "pu": -1, "distance": -1.0},
            counts(pickup_outside_month=1),
            id="outside-before-duration",
        ),
        pytest.param(
            {"minutes": -1.0, "do": 1.5, "distance": math.inf},
            counts(duration_out_of_range=1),
            id="duration-before-location",
        ),
        pytest.param(
            {"pu": -7, "distance": None}, counts(invalid_location=1), id="location-before-distance"
        ),
    ],
)
def test_prepare_trips_one_row(row, dropped):
    prepared = features.prepare_trips(raw_trips([row]), Month(2021, 3))
    assert prepared.dropped == dropped
    assert list(prepared.dropped) == REASONS  # every reason, in the order the checks run
    assert prepared.table.num_rows == (1 if dropped == KEPT else 0)


@pytest.mark.parametrize(
    ("year", "month", "pickup", "kept"),
    [
        (2021, 3, datetime(2021, 3, 1), True),
        (2021, 3, datetime(2021, 2, 28, 23, 59, 59, 999_999), False),
        (2021, 3, datetime(2021, 3, 31, 23, 59, 59, 999_999), True),
        (2021, 3, datetime(2021, 4, 1), False),
        (2021, 12, datetime(2021, 12, 1), True),
        (2021, 12, datetime(2021, 12, 31, 23, 55), True),  # ends in January: still December's
        (2021, 12, datetime(2022, 1, 1), False),
        (2021, 12, datetime(2020, 12, 15), False),
        (2021, 1, datetime(2021, 1, 1), True),
        (2021, 1, datetime(2020, 12, 31, 23, 59), False),
        (2020, 2, datetime(2020, 2, 29, 12), True),  # leap day
        (2020, 2, datetime(2020, 3, 1), False),
    ],
)
def test_prepare_trips_month_boundaries(year, month, pickup, kept):
    prepared = features.prepare_trips(raw_trips([{"pickup": pickup}]), Month(year, month))
    assert prepared.table.num_rows == int(kept)
    assert prepared.dropped == (KEPT if kept else counts(pickup_outside_month=1))


@pytest.mark.parametrize(
    ("year", "month", "start", "end"),
    [
        (2021, 3, datetime(2021, 3, 1), datetime(2021, 4, 1)),
        (2021, 11, datetime(2021, 11, 1), datetime(2021, 12, 1)),
        (2021, 12, datetime(2021, 12, 1), datetime(2022, 1, 1)),
        (2022, 1, datetime(2022, 1, 1), datetime(2022, 2, 1)),
    ],
)
def test_month_bounds(year, month, start, end):
    assert Month(year, month).bounds() == (start, end)


def test_prepare_trips_judges_zoned_pickups_by_new_york_time():
    # 04:30 UTC on March 1st is 23:30 on February 28th in New York
    zone = pa.timestamp("us", tz="America/New_York")
    pickups = pa.array(
        [datetime(2021, 3, 1, 4, 30), datetime(2021, 3, 1, 5, 30)], pa.timestamp("us", tz="UTC")
    )
    dropoffs = pa.array(
        [datetime(2021, 3, 1, 4, 45), datetime(2021, 3, 1, 5, 45)], pa.timestamp("us", tz="UTC")
    )
    raw = raw_trips([{}, {}])
    raw = raw.set_column(0, layouts.PICKUP, pickups.cast(zone)).set_column(
        1, layouts.DROPOFF, dropoffs.cast(zone)
    )
    prepared = features.prepare_trips(raw, Month(2021, 3))
    assert prepared.dropped == counts(pickup_outside_month=1)
    assert prepared.table[layouts.PICKUP].to_pylist() == [datetime(2021, 3, 1, 0, 30)]
    assert prepared.table[features.ACTUAL_DURATION].to_pylist() == [15.0]


# --- prepare_trips: a batch ----------------------------------------------------------------

BATCH = [
    {},  # 0 kept
    {"pickup": None},  # 1
    {"minutes": 61.0},  # 2
    {"pu": 43.0, "do": None, "minutes": 1.0},  # 3 kept
    {"do": 2.5},  # 4
    {"distance": math.inf},  # 5
    {"pickup": datetime(2021, 4, 1)},  # 6
    {"minutes": -2.0},  # 7
    {"pu": None, "minutes": 60.0, "distance": 0.0},  # 8 kept
    {"distance": -3.0},  # 9
]


@pytest.mark.parametrize("first_row", [0, 1, 1_000_000, 2**40])
def test_prepare_trips_batch(first_row):
    prepared = features.prepare_trips(raw_trips(BATCH), Month(2021, 3), first_row=first_row)
    assert prepared.dropped == {
        "missing_datetime": 1,
        "pickup_outside_month": 1,
        "duration_out_of_range": 2,
        "invalid_location": 1,
        "invalid_distance": 2,
    }
    table = prepared.table
    assert table[features.ROW_NUMBER].to_pylist() == [first_row, first_row + 3, first_row + 8]
    assert table[features.ACTUAL_DURATION].to_pylist() == [10.0, 1.0, 60.0]
    assert table[layouts.PICKUP_LOCATION].to_pylist() == [43, 43, None]
    assert table[layouts.DROPOFF_LOCATION].to_pylist() == [151, None, 151]
    assert table[layouts.DISTANCE].to_pylist() == [2.5, 2.5, 0.0]
    assert table[layouts.PICKUP].to_pylist() == [NOON] * 3


def test_prepare_trips_output_types():
    table = features.prepare_trips(raw_trips([{"pu": 43.0}, {}]), Month(2021, 3)).table
    assert table.schema.field(layouts.PICKUP).type == pa.timestamp("us")
    assert table.schema.field(layouts.PICKUP_LOCATION).type == pa.int64()
    assert table.schema.field(layouts.DROPOFF_LOCATION).type == pa.int64()
    assert table.schema.field(layouts.DISTANCE).type == pa.float64()
    assert table.schema.field(features.ACTUAL_DURATION).type == pa.float64()
    assert table.schema.field(features.ROW_NUMBER).type == pa.int64()


def test_prepare_trips_of_an_empty_batch():
    prepared = features.prepare_trips(raw_trips([]), Month(2021, 3), first_row=10)
    assert prepared.table.num_rows == 0
    assert prepared.dropped == KEPT


def test_prepare_trips_without_distance_or_locations():
    raw = raw_trips([{}, {"distance": math.nan}, {"pu": -3}]).select(
        [layouts.PICKUP, layouts.DROPOFF]
    )
    prepared = features.prepare_trips(raw, Month(2021, 3))
    assert prepared.dropped == KEPT
    assert prepared.table.column_names == [
        layouts.PICKUP,
        features.ACTUAL_DURATION,
        features.ROW_NUMBER,
    ]


def test_prepare_trips_counts_every_row_of_a_generated_month():
    raw = canonical(make_trips("green", 2021, 3, rows=3_000), "green", features.ALL_FEATURES)
    prepared = features.prepare_trips(raw, Month(2021, 3))
    assert prepared.table.num_rows + sum(prepared.dropped.values()) == 3_000
    assert prepared.dropped["pickup_outside_month"] > 0
    assert prepared.dropped["duration_out_of_range"] > 0
    durations = prepared.table[features.ACTUAL_DURATION].to_numpy()
    assert durations.min() >= 1
    assert durations.max() <= 60


def test_generated_green_variants_give_identical_prepared_trips():
    a_raw = make_trips("green", 2021, 2, rows=2_000, variant="A")
    b_raw = make_trips("green", 2021, 2, rows=2_000, variant="B")
    assert a_raw.schema != b_raw.schema  # the two dtype eras really differ
    a = features.prepare_trips(canonical(a_raw, "green", features.ALL_FEATURES), Month(2021, 2))
    b = features.prepare_trips(canonical(b_raw, "green", features.ALL_FEATURES), Month(2021, 2))
    assert a.table.num_rows > 1_900
    assert a.table.equals(b.table)
    assert a.dropped == b.dropped


# --- pu_do and feature_records -------------------------------------------------------------


@pytest.mark.parametrize(
    ("pu", "do", "expected"),
    [
        ([43, 1], [151, 265], ["43_151", "1_265"]),
        ([None, 43], [7, None], ["-1_7", "43_-1"]),
        ([None], [None], ["-1_-1"]),
        ([0], [0], ["0_0"]),
    ],
)
def test_pu_do(pu, do, expected):
    table = pa.table(
        {
            layouts.PICKUP_LOCATION: pa.array(pu, pa.int64()),
            layouts.DROPOFF_LOCATION: pa.array(do, pa.int64()),
        }
    )
    assert features.pu_do(table).to_pylist() == expected


@pytest.mark.parametrize("kind", [pa.float64(), pa.float32(), pa.string(), pa.int32()])
def test_pu_do_of_prepared_trips_never_has_a_decimal_point(kind):
    raw = raw_trips([{}, {}, {}])
    values = pa.array([43, None, 7]).cast(kind)
    raw = raw.set_column(2, layouts.PICKUP_LOCATION, values)
    prepared = features.prepare_trips(raw, Month(2021, 3)).table
    assert features.pu_do(prepared).to_pylist() == ["43_151", "-1_151", "7_151"]


def test_pu_do_of_generated_fhv_trips():
    raw = canonical(make_trips("fhv", 2021, 3, rows=1_000), "fhv", ("PU_DO",))
    keys = features.pu_do(features.prepare_trips(raw, Month(2021, 3)).table).to_pylist()
    assert all(re.fullmatch(r"(-1|\d+)_(-1|\d+)", key) for key in keys)
    assert any(key.startswith("-1_") for key in keys)
    assert any(key.endswith("_-1") for key in keys)


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (
            features.ALL_FEATURES,
            [
                {"PU_DO": "43_151", "trip_distance": 2.5},
                {"PU_DO": "-1_151", "trip_distance": 0.0},
            ],
        ),
        (("PU_DO",), [{"PU_DO": "43_151"}, {"PU_DO": "-1_151"}]),
        (("trip_distance",), [{"trip_distance": 2.5}, {"trip_distance": 0.0}]),
    ],
)
def test_feature_records(names, expected):
    prepared = features.prepare_trips(
        raw_trips([{}, {"pu": None, "distance": 0.0}]), Month(2021, 3)
    ).table
    assert features.feature_records(prepared, names) == expected


def test_feature_records_of_no_trips():
    assert (
        features.feature_records(features.prepare_trips(raw_trips([]), Month(2021, 3)).table) == []
    )


def test_feature_records_need_no_distance_column_without_the_feature():
    raw = canonical(make_trips("fhv", 2021, 3, rows=50), "fhv", ("PU_DO",))
    prepared = features.prepare_trips(raw, Month(2021, 3)).table
    records = features.feature_records(prepared, ("PU_DO",))
    assert len(records) == prepared.num_rows
    assert all(list(record) == ["PU_DO"] for record in records)


# --- available_features and required_fields ------------------------------------------------


@pytest.mark.parametrize(
    ("taxi_type", "expected"),
    [
        ("green", ("PU_DO", "trip_distance")),
        ("yellow", ("PU_DO", "trip_distance")),
        ("fhvhv", ("PU_DO", "trip_distance")),
        ("fhv", ("PU_DO",)),
    ],
)
def test_available_features(taxi_type, expected):
    assert features.available_features(taxi_type) == expected


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (
            features.ALL_FEATURES,
            [
                layouts.PICKUP,
                layouts.DROPOFF,
                layouts.PICKUP_LOCATION,
                layouts.DROPOFF_LOCATION,
                layouts.DISTANCE,
            ],
        ),
        (
            ("PU_DO",),
            [layouts.PICKUP, layouts.DROPOFF, layouts.PICKUP_LOCATION, layouts.DROPOFF_LOCATION],
        ),
        (("trip_distance",), [layouts.PICKUP, layouts.DROPOFF, layouts.DISTANCE]),
        ((), [layouts.PICKUP, layouts.DROPOFF]),
        (
            frozenset({"trip_distance", "PU_DO"}),
            [
                layouts.PICKUP,
                layouts.DROPOFF,
                layouts.PICKUP_LOCATION,
                layouts.DROPOFF_LOCATION,
                layouts.DISTANCE,
            ],
        ),
    ],
)
def test_required_fields(names, expected):
    assert features.required_fields(names) == expected


@pytest.mark.parametrize("taxi_type", TAXI_TYPES)
def test_every_taxi_type_provides_the_fields_of_its_features(taxi_type):
    fields = features.required_fields(features.available_features(taxi_type))
    names = make_trips(taxi_type, 2021, 3, rows=5).column_names
    assert list(layouts.source_columns(taxi_type, names, fields)) == fields
