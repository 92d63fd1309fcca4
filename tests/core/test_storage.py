"""Reading trip files and committing prediction files: `ride_duration.core.storage`."""

from __future__ import annotations

import io
import struct

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ride_duration.batch.layout import MonthOutput
from ride_duration.batch.month import score_month
from ride_duration.batch.output import OUTPUT_SCHEMA
from ride_duration.core import storage, writes
from ride_duration.core.errors import InputNotFoundError, InputUnreadableError, SchemaError
from ride_duration.core.months import Month
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
        batch_size=100,
    )


# --- AtomicParquetWriter -------------------------------------------------------------------


def test_a_committed_file_appears_complete(tmp_path):
    target = tmp_path / "out" / "taxi_type=green" / "abc.parquet"
    with writes.AtomicParquetWriter(str(target), SCHEMA) as writer:
        writer.write(rows(0, 3))
        writer.write(rows(3, 0))
        writer.write(rows(3, 4))
        assert not target.exists()  # nothing at the final location before the commit
        assert writer.rows_written == 7
    assert target.exists()
    expected = pa.concat_tables([rows(0, 3), rows(3, 4)])
    assert pq.read_table(target).to_pylist() == expected.to_pylist()
    assert [p.name for p in target.parent.iterdir()] == ["abc.parquet"]


def test_a_file_with_no_rows_is_committed_with_its_schema(tmp_path):
    target = tmp_path / "empty.parquet"
    with writes.AtomicParquetWriter(str(target), OUTPUT_SCHEMA):
        pass
    read = pq.read_table(target)
    assert read.num_rows == 0
    assert read.schema.equals(OUTPUT_SCHEMA)


def test_the_staging_file_is_hidden_beside_the_target(tmp_path):
    target = tmp_path / "abc.parquet"
    with writes.AtomicParquetWriter(str(target), SCHEMA) as writer:
        writer.write(rows(0, 2))
        staged = list(tmp_path.iterdir())
        assert len(staged) == 1
        assert staged[0].name.startswith(".abc.parquet.")
    assert [p.name for p in tmp_path.iterdir()] == ["abc.parquet"]


class Boom(Exception):
    pass


def write_then_fail(target, tables: list[pa.Table]) -> None:
    with writes.AtomicParquetWriter(str(target), SCHEMA) as writer:
        for table in tables:
            writer.write(table)
        raise Boom


@pytest.mark.parametrize("written", [0, 1, 3])
def test_an_exception_inside_the_with_leaves_nothing(tmp_path, written):
    target = tmp_path / "out" / "abc.parquet"
    with pytest.raises(Boom):
        write_then_fail(target, [rows(batch * 10, 10) for batch in range(written)])
    assert not target.exists()
    assert list(target.parent.iterdir()) == []  # no leftover staging file


def test_a_failed_write_leaves_an_earlier_file_alone(tmp_path):
    target = tmp_path / "abc.parquet"
    with writes.AtomicParquetWriter(str(target), SCHEMA) as writer:
        writer.write(rows(0, 5))
    with pytest.raises(Boom):
        write_then_fail(target, [rows(100, 1)])
    assert pq.read_table(target).equals(rows(0, 5))
    assert [p.name for p in tmp_path.iterdir()] == ["abc.parquet"]


def test_a_table_of_another_schema_is_refused_and_discarded(tmp_path):
    target = tmp_path / "abc.parquet"
    with (
        pytest.raises((ValueError, pa.ArrowInvalid)),
        writes.AtomicParquetWriter(str(target), SCHEMA) as writer,
    ):
        writer.write(pa.table({"other": [1]}))
    assert list(tmp_path.iterdir()) == []


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
