"""The ride rules, one set for batch and online (`data.rules`): which values a ride may hold."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ride_duration.data import rules

GOOD = {"PULocationID": 130, "DOLocationID": 205, "trip_distance": 3.66}


@pytest.mark.parametrize(
    ("ids", "ok"),
    [
        (np.array([0, 7, -1]), [True, True, False]),
        (np.array([0.0, 7.0, 7.5, -1.0, np.nan, np.inf, 2.0**53]), [1, 1, 0, 0, 0, 0, 0]),
    ],
)
def test_location_ok(ids, ok):
    assert rules.location_ok(ids).tolist() == [bool(x) for x in ok]


@pytest.mark.parametrize(
    ("distance", "ok"),
    [
        (0.0, True),
        (3.66, True),
        (3.4e38, True),
        (1e39, False),
        (-0.1, False),
        (math.nan, False),
        (math.inf, False),
    ],
)
def test_distance_ok(distance, ok):
    assert rules.distance_ok(np.array([distance])).tolist() == [ok]


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        ({"PULocationID": -3}, "PULocationID", "whole number from 0 up"),
        ({"PULocationID": 1.5}, "PULocationID", "whole number from 0 up"),
        ({"PULocationID": "nan"}, "PULocationID", "whole number from 0 up"),
        ({"PULocationID": math.nan}, "PULocationID", "whole number from 0 up"),
        ({"DOLocationID": True}, "DOLocationID", "whole number from 0 up"),
        ({"DOLocationID": [1]}, "DOLocationID", "whole number from 0 up"),
        ({"trip_distance": 1e39}, "trip_distance", "finite number of miles"),
        ({"trip_distance": None}, "trip_distance", "finite number of miles"),
        ({"trip_distance": "3 miles"}, "trip_distance", "finite number of miles"),
        ({"trip_distance": 10**400}, "trip_distance", "finite number of miles"),
        ({"trip_distance": -1}, "trip_distance", "finite number of miles"),
    ],
)
def test_a_ride_that_breaks_a_rule_is_refused_naming_its_field(change, field, says):
    checked = rules.check_rides([GOOD, GOOD | change])
    assert checked.kept == [0]
    [error] = checked.errors
    assert (error.index, error.field) == (1, field)
    assert says in str(error)


@pytest.mark.parametrize(
    ("ride", "field"),
    [([1, 2, 3], None), ("ride", None), (None, None), ({"PULocationID": 1}, "DOLocationID")],
)
def test_a_malformed_ride_is_refused(ride, field):
    checked = rules.check_rides([ride, GOOD])
    assert checked.kept == [1]
    assert [(e.index, e.field) for e in checked.errors] == [(0, field)]


@pytest.mark.parametrize(
    ("ride", "pickup", "dropoff", "distance"),
    [
        (GOOD, 130, 205, 3.66),
        ({"PULocationID": None, "DOLocationID": "7", "trip_distance": "2.5"}, -1, 7, 2.5),
        ({"PULocationID": 7.0, "DOLocationID": 0, "trip_distance": 0}, 7, 0, 0.0),
    ],
)
def test_kept_rides_become_the_model_columns(ride, pickup, dropoff, distance):
    checked = rules.check_rides([ride])
    assert checked.errors == []
    assert (checked.pickup.tolist(), checked.dropoff.tolist()) == ([pickup], [dropoff])
    assert checked.distance.tolist() == [distance]
    assert checked.pickup.dtype == np.int64
    assert checked.distance.dtype == np.float64


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("abc", "abc"), (156, 156), (156.0, 156), ("x" * 256, "x" * 256)],
)
def test_a_ride_id_that_keeps_the_rule(value, expected):
    assert rules.ride_id(value) == expected


@pytest.mark.parametrize("value", ["", "x" * 257, 10**300, 1e300, 1.5, True, [1], {"a": 1}])
def test_a_ride_id_that_breaks_the_rule(value):
    with pytest.raises(ValueError, match="ride_id must be"):
        rules.ride_id(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("x" * 900_000, None),
        (10**5000, "<int of 16610 bits>"),
        # mypy found it: a value holding a huge int raised AttributeError (list.bit_length)
        ([10**5000], "<list holding an int too long to write out>"),
        ({"ride": [1, 10**5000]}, "<dict holding an int too long to write out>"),
    ],
    ids=["long text", "huge int", "list holding a huge int", "dict holding a huge int"],
)
def test_a_shown_value_is_cut_short(value, expected):
    shown = rules.shown(value)
    assert len(shown) < 80
    assert expected is None or shown == expected
