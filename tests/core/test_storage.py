"""Reading trip files and committing prediction files: `ride_duration.core.storage`."""

from __future__ import annotations

import io
import struct

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ride_duration.batch.month import score_month
from ride_duration.batch.paths import MonthOutput
from ride_duration.core import storage
from ride_duration.core.errors import InputNotFoundError, InputUnreadableError, SchemaError
from ride_duration.core.months import Month
from ride_duration.core.settings import Settings
from ride_duration.model.predictors import RecordsPredictor
from ride_duration.model.resolve import ModelRef
from tests.support.tlc_fake import make_trips, write_trips

SCHEMA = pa.schema([("a", pa.int64()), ("b", pa.string())])
MODEL = ModelRef(uri="x", resolved_uri="x", name="m", version="1", run_id="abc")


def rows(start: int, count: int) -> pa.Table:
    return pa.table(
        {"a": list(range(start, start + count)), "b": [str(i) for i in range(count)]},
        schema=SCHEMA,
    )


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


class Constant:
    """A model that predicts 10 minutes for every trip."""

    def predict(self, records: list[dict]) -> list[float]:
        return [10.0] * len(records)


def score(input_path, output_path) -> object:
    return score_month(
        taxi_type="green",
        month=Month(2021, 3),
        input_uri=str(input_path),
        output=MonthOutput(str(output_path)),
        model=MODEL,
        predictor=RecordsPredictor(Constant()),
        settings=Settings(batch_size=100),
    )


# --- open_parquet and iter_batches ---------------------------------------------------------


def test_open_parquet_reads_a_file(tmp_path):
    path = tmp_path / "trips.parquet"
    path.write_bytes(parquet_bytes(rows(0, 25)))
    with storage.open_parquet(str(path)) as parquet:
        batches = list(storage.iter_batches(parquet, ["a"], 10, str(path)))
    assert [batch.num_rows for batch in batches] == [10, 10, 5]
    assert pa.Table.from_batches(batches)["a"].to_pylist() == list(range(25))


@pytest.mark.parametrize("name", ["missing.parquet", "no/such/folder/missing.parquet"])
def test_a_missing_file_is_input_not_found(tmp_path, name):
    uri = str(tmp_path / name)
    with pytest.raises(InputNotFoundError, match=r"missing\.parquet"), storage.open_parquet(uri):
        pass


@pytest.mark.parametrize(
    "content",
    [b"", b"not a parquet file at all\n" * 10, b"PAR1", b"PAR1" + b"\0" * 100 + b"PAR1"],
    ids=["empty", "text", "magic-only", "magic-without-footer"],
)
def test_a_file_that_is_not_parquet_is_input_unreadable(tmp_path, content):
    path = tmp_path / "trips.parquet"
    path.write_bytes(content)
    with (
        pytest.raises(InputUnreadableError, match=r"trips\.parquet"),
        storage.open_parquet(str(path)) as parquet,
    ):
        list(storage.iter_batches(parquet, ["a"], 10, str(path)))


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def zeroed_pages(data: bytes) -> bytes:
    """The file with its data pages zeroed and its footer intact."""
    footer = struct.unpack("<i", data[-8:-4])[0]
    end = len(data) - 8 - footer
    return data[:4] + b"\0" * (end - 4) + data[end:]


@pytest.mark.parametrize("damage", [truncated, zeroed_pages])
def test_a_damaged_file_is_input_unreadable(tmp_path, damage):
    path = tmp_path / "trips.parquet"
    path.write_bytes(damage(parquet_bytes(rows(0, 1_000))))
    with (
        pytest.raises(InputUnreadableError, match=r"trips\.parquet"),
        storage.open_parquet(str(path)) as parquet,
    ):
        list(storage.iter_batches(parquet, ["a", "b"], 100, str(path)))


def test_zeroed_pages_are_noticed_while_reading_batches(tmp_path):
    path = tmp_path / "trips.parquet"
    path.write_bytes(zeroed_pages(parquet_bytes(rows(0, 1_000))))
    with storage.open_parquet(str(path)) as parquet:
        assert parquet.metadata.num_rows == 1_000  # the footer still reads
        with pytest.raises(InputUnreadableError, match="truncated or corrupt"):
            list(storage.iter_batches(parquet, ["a", "b"], 100, str(path)))


@pytest.mark.parametrize("damage", [truncated, zeroed_pages])
def test_scoring_a_damaged_trip_file_is_input_unreadable_and_writes_nothing(tmp_path, damage):
    good = write_trips(tmp_path / "good.parquet", make_trips("green", 2021, 3, rows=3_000))
    path = tmp_path / "trips.parquet"
    path.write_bytes(damage(good.read_bytes()))
    output = tmp_path / "out" / "abc.parquet"
    with pytest.raises(InputUnreadableError, match=r"trips\.parquet"):
        score(path, output)
    assert not output.exists()
    assert not output.parent.exists() or list(output.parent.iterdir()) == []


def test_scoring_a_missing_trip_file_is_input_not_found_and_writes_nothing(tmp_path):
    output = tmp_path / "out" / "abc.parquet"
    with pytest.raises(InputNotFoundError):
        score(tmp_path / "green_tripdata_2021-03.parquet", output)
    assert not (tmp_path / "out").exists()


def test_scoring_a_good_file_through_the_same_helper_works(tmp_path):
    # the control for the two tests above: the damage, not the helper, makes them fail
    path = write_trips(tmp_path / "trips.parquet", make_trips("green", 2021, 3, rows=3_000))
    output = tmp_path / "out" / "abc.parquet"
    result = score(path, output)
    assert result.rows_read == 3_000
    assert pq.read_table(output).num_rows == result.rows_scored > 0
    assert set(pq.read_table(output)["predicted_duration"].to_pylist()) == {10.0}


def test_scoring_a_file_of_another_type_is_a_schema_error_and_writes_nothing(tmp_path):
    path = write_trips(tmp_path / "trips.parquet", make_trips("yellow", 2021, 3, rows=100))
    output = tmp_path / "out" / "abc.parquet"
    with pytest.raises(SchemaError):
        score(path, output)
    assert not (tmp_path / "out").exists()


# --- exists ----------------------------------------------------------------------------------


def test_exists(tmp_path):
    path = tmp_path / "a.parquet"
    assert not storage.exists(str(path))
    path.write_bytes(b"x")
    assert storage.exists(str(path))
