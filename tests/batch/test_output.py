"""The table a scored month writes (`batch.output`): its schema and its rows."""

from __future__ import annotations

import numpy as np
import pytest

from ride_duration.batch.output import OUTPUT_SCHEMA, output_table
from ride_duration.core.months import Month
from ride_duration.data import features, layouts
from ride_duration.data.ride_ids import deterministic_ride_ids
from tests.support.rides import prepared


@pytest.fixture(scope="module")
def trips():
    return prepared(2021, 2, 1_500)


def test_the_rows_are_the_trips_their_ids_and_predictions(trips):
    predictions = np.linspace(1.0, 30.0, trips.num_rows)
    ids = deterministic_ride_ids("green", Month(2021, 2), trips[features.ROW_NUMBER].to_numpy())
    table = output_table(trips, ids, predictions, "ride-duration/3")
    assert table.schema == OUTPUT_SCHEMA
    actual = trips[features.ACTUAL_DURATION].to_numpy()
    np.testing.assert_array_equal(table["actual_duration"].to_numpy(), actual)
    np.testing.assert_array_equal(table["predicted_duration"].to_numpy(), predictions)
    np.testing.assert_array_equal(table["diff"].to_numpy(), actual - predictions)
    assert table["ride_id"].to_pylist() == ids.to_pylist()
    assert table["pickup_datetime"].equals(trips[layouts.PICKUP])
    assert table["PULocationID"].equals(trips[layouts.PICKUP_LOCATION])
    assert set(table["model_version"].to_pylist()) == {"ride-duration/3"}


def test_trips_without_locations_get_null_locations(trips):
    some = trips.slice(0, 10).select(
        [layouts.PICKUP, layouts.DISTANCE, features.ACTUAL_DURATION, features.ROW_NUMBER]
    )
    ids = deterministic_ride_ids("fhv", Month(2021, 2), np.arange(10))
    table = output_table(some, ids, np.full(10, 12.5), "run")
    assert table.schema == OUTPUT_SCHEMA
    assert table["PULocationID"].null_count == 10
    assert table["DOLocationID"].null_count == 10


def test_no_trips_are_an_empty_table_of_the_schema(trips):
    ids = deterministic_ride_ids("green", Month(2021, 2), np.arange(0))
    table = output_table(trips.slice(0, 0), ids, np.empty(0), "m/1")
    assert table.schema == OUTPUT_SCHEMA
    assert table.num_rows == 0
