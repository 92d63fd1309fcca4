"""Writes that never leave half a file (`core.writes`): staged, committed whole, or nothing."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ride_duration.batch.output import OUTPUT_SCHEMA
from ride_duration.core import writes

SCHEMA = pa.schema([("a", pa.int64()), ("b", pa.string())])


def rows(start: int, count: int) -> pa.Table:
    return pa.table(
        {"a": list(range(start, start + count)), "b": [str(i) for i in range(count)]},
        schema=SCHEMA,
    )


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
