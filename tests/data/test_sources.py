"""Where a month's trips come from (`data.sources`): the file a template names, read canonical."""

from __future__ import annotations

import pyarrow as pa
import pytest

from ride_duration.core.errors import ConfigurationError, InputNotFoundError, SchemaError
from ride_duration.core.months import Month
from ride_duration.data import features, layouts
from ride_duration.data.sources import canonical_columns, open_trips, read_trips, trip_file_uri
from tests.support.tlc_fake import make_trips, write_trips


@pytest.mark.parametrize(
    ("template", "uri"),
    [
        ("{taxi_type}_{year}-{month:02d}.parquet", "fhv_2020-05.parquet"),
        ("s3://b/{taxi_type}/{year}/{month}", "s3://b/fhv/2020/5"),
        ("/data/fhv-{month:02d}-{year}.parquet", "/data/fhv-05-2020.parquet"),
    ],
)
def test_a_template_names_one_months_file(template, uri):
    assert trip_file_uri(template, "fhv", Month(2020, 5)) == uri


@pytest.mark.parametrize(
    ("template", "says"),
    [
        ("{taxi}.parquet", "{taxi} is not one of"),
        ("{month.__class__}", "is not one of"),
        ("{0}", "is not one of"),
        ("{month:zz}", "bad URI template"),
        ("{month", "bad URI template"),
        # every month would read the same file, and write its rows as another month's
        ("fixed.parquet", "URI template fixed.parquet has no {year} and {month}"),
        ("{taxi_type}-{month}.parquet", "has no {year} and {month}"),
        ("{taxi_type}-{year}.parquet", "has no {year} and {month}"),
    ],
)
def test_a_template_that_reaches_further_is_refused(template, says):
    with pytest.raises(ConfigurationError, match=says.replace("{", r"\{")):
        trip_file_uri(template, "green", Month(2021, 3))


def test_canonical_columns_keeps_the_fields_under_their_canonical_names():
    raw = make_trips("green", 2021, 3, rows=10)
    trips = canonical_columns(raw, "green", [layouts.PICKUP, layouts.DISTANCE])
    assert trips.column_names == [layouts.PICKUP, layouts.DISTANCE]
    assert trips[layouts.DISTANCE].equals(raw["trip_distance"])


def test_a_file_is_read_in_batches_of_canonical_columns(tmp_path):
    path = write_trips(tmp_path / "green.parquet", make_trips("green", 2021, 3, rows=2_500))
    fields = features.required_fields(features.ALL_FEATURES)
    with open_trips(str(path), "green", fields, batch_size=1_000) as (columns, batches):
        tables = list(batches)
    assert columns[layouts.PICKUP] == "lpep_pickup_datetime"
    assert sum(table.num_rows for table in tables) == 2_500
    assert all(table.column_names == fields for table in tables)
    month = read_trips(str(path), "green", Month(2021, 3), batch_size=1_000)
    assert month.table.num_rows + sum(month.dropped.values()) == 2_500


def test_a_missing_file_and_a_file_without_the_columns_are_clear_errors(tmp_path):
    with (
        pytest.raises(InputNotFoundError),
        open_trips(str(tmp_path / "no.parquet"), "green", [], 10),
    ):
        pass
    path = write_trips(tmp_path / "other.parquet", pa.table({"x": [1]}))
    with (
        pytest.raises(SchemaError, match="lacks column"),
        open_trips(str(path), "green", [layouts.PICKUP], 10),
    ):
        pass
