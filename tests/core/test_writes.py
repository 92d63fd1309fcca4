"""Writes that never leave half a file (`core.writes`): staged, committed whole, or nothing."""

from __future__ import annotations

import os

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ride_duration.batch.output import OUTPUT_SCHEMA
from ride_duration.core import writes
from ride_duration.core.errors import OutputWriteError

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


# --- footer metadata --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "metadata",
    [
        None,
        {},
        {b"ride_duration.manifest": b'{"rows": 7}'},
        {b"a": b"1", b"b": "é".encode(), b"empty": b""},
    ],
)
def test_a_commit_puts_its_metadata_in_the_footer(tmp_path, metadata):
    target = tmp_path / "abc.parquet"
    writer = writes.AtomicParquetWriter(str(target), SCHEMA)
    writer.write(rows(0, 7))
    writer.commit(metadata)
    footer = pq.ParquetFile(target).metadata.metadata or {}
    assert {k: v for k, v in footer.items() if k != b"ARROW:schema"} == (metadata or {})
    assert pq.read_table(target).to_pylist() == rows(0, 7).to_pylist()


# --- a store's failures -----------------------------------------------------------------------


class FailingWriter:
    """A parquet writer whose store fails with `error` on every write."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def write_table(self, table: pa.Table) -> None:
        raise self.error

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (ConnectionError("connection reset"), True),
        (TimeoutError("read timed out"), True),
        (OSError(28, "No space left on device"), True),
        (PermissionError(13, "Permission denied"), False),
    ],
)
def test_a_write_the_store_fails_is_one_output_write_error(tmp_path, error, transient):
    target = tmp_path / "abc.parquet"
    writer = writes.AtomicParquetWriter(str(target), SCHEMA)
    writer._writer = FailingWriter(error)
    with pytest.raises(OutputWriteError) as failed:
        writer.write(rows(0, 1))
    writer.discard()
    assert str(failed.value).startswith(f"cannot write {target}: ")
    assert failed.value.transient is transient
    assert failed.value.__cause__ is error
    assert writer.rows_written == 0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "blocked",
    ["file/abc.parquet", "file/deeper/abc.parquet"],
    ids=["a file where its folder goes", "a file where a parent folder goes"],
)
def test_a_writer_whose_folder_cannot_be_made_is_refused_for_good(tmp_path, blocked):
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(OutputWriteError) as refused:
        writes.AtomicParquetWriter(str(tmp_path / blocked), SCHEMA)
    assert "cannot write" in str(refused.value)
    assert "check OUTPUT_ROOT" in str(refused.value)
    assert refused.value.transient is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def commit_then_discard(target) -> None:
    """How the sink publishes: commit, and discard whatever a failed commit left."""
    writer = writes.AtomicParquetWriter(str(target), SCHEMA)
    writer.write(rows(0, 3))
    try:
        writer.commit()
    except BaseException:
        writer.discard()
        raise


def commit_by_the_with(target) -> None:
    with writes.AtomicParquetWriter(str(target), SCHEMA) as writer:
        writer.write(rows(0, 3))


@pytest.mark.parametrize(
    "commit",
    [
        commit_then_discard,
        commit_by_the_with,
    ],
)
def test_a_commit_that_cannot_rename_into_place_is_refused_and_leaves_nothing(tmp_path, commit):
    target = tmp_path / "abc.parquet"
    target.mkdir()  # a folder where the file goes
    with pytest.raises(OutputWriteError) as refused:
        commit(target)
    assert refused.value.transient is False
    assert [p.name for p in tmp_path.iterdir()] == ["abc.parquet"]
    assert target.is_dir()


# --- publish_copy -----------------------------------------------------------------------------


@pytest.mark.parametrize("before", [None, b"the old set"], ids=["no target", "an old target"])
@pytest.mark.parametrize("links", [True, False], ids=["hard links", "no hard links"])
def test_a_published_copy_replaces_the_target_whole(tmp_path, monkeypatch, before, links):
    source = tmp_path / "_versions" / "abc.parquet"
    source.parent.mkdir()
    source.write_bytes(b"the new set")
    target = tmp_path / "month=03" / "predictions.parquet"
    opened = None
    if before is not None:
        target.parent.mkdir()
        target.write_bytes(before)
        opened = target.open("rb")  # a reader that opened the old set before the switch
    if not links:

        def no_links(*_: object) -> None:
            raise OSError(1, "Operation not permitted")

        monkeypatch.setattr(writes.os, "link", no_links)
    writes.publish_copy(str(source), str(target))
    assert target.read_bytes() == b"the new set"
    assert source.read_bytes() == b"the new set"
    assert target.samefile(source) is links  # a hard link: no byte copied
    assert [p.name for p in target.parent.iterdir()] == ["predictions.parquet"]
    assert [p.name for p in source.parent.iterdir()] == ["abc.parquet"]
    if opened is not None:
        with opened:
            assert opened.read() == before  # the old file, whole, for whoever has it open


@pytest.mark.parametrize("target", ["abc.parquet", "predictions.parquet"])
def test_publishing_a_copy_that_is_already_there_leaves_nothing_behind(tmp_path, target):
    source = tmp_path / "abc.parquet"
    source.write_bytes(b"the set")
    writes.publish_copy(str(source), str(tmp_path / target))  # a rerun publishes it again
    writes.publish_copy(str(source), str(tmp_path / target))
    assert (tmp_path / target).read_bytes() == b"the set"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({"abc.parquet", target})


def replace_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writes.os, "replace", full)


@pytest.mark.parametrize(
    ("source_bytes", "in_the_way", "breakage", "error"),
    [
        (None, False, None, FileNotFoundError),
        (b"the new set", True, None, OSError),
        (b"the new set", False, replace_fails, OSError),
    ],
    ids=["no source", "a folder where the target goes", "the rename fails"],
)
def test_a_failed_publish_leaves_the_old_target_and_nothing_else(
    tmp_path, monkeypatch, source_bytes, in_the_way, breakage, error
):
    source = tmp_path / "_versions" / "abc.parquet"
    source.parent.mkdir()
    if source_bytes is not None:
        source.write_bytes(source_bytes)
    month = tmp_path / "month=03"
    target = month / "predictions.parquet"
    if in_the_way:
        (target / "part").mkdir(parents=True)
    else:
        month.mkdir()
        target.write_bytes(b"the old set")
    if breakage:
        breakage(monkeypatch)
    with pytest.raises(error):
        writes.publish_copy(str(source), str(target))
    assert [p.name for p in month.iterdir()] == ["predictions.parquet"]  # no staging file
    if not in_the_way:
        assert target.read_bytes() == b"the old set"
    assert [p.name for p in source.parent.iterdir()] == (["abc.parquet"] if source_bytes else [])


def test_a_copy_published_on_an_object_store_is_one_copy(tmp_path):
    fs = fsspec.filesystem("memory")
    base = f"memory://{tmp_path.name}"
    fs.pipe_file(f"{base}/_versions/abc.parquet", b"the new set")
    fs.pipe_file(f"{base}/month=03/predictions.parquet", b"the old set")
    try:
        writes.publish_copy(f"{base}/_versions/abc.parquet", f"{base}/month=03/predictions.parquet")
        assert fs.cat_file(f"{base}/month=03/predictions.parquet") == b"the new set"
        assert fs.ls(f"{base}/month=03", detail=False) == [
            f"/{tmp_path.name}/month=03/predictions.parquet"
        ]
    finally:
        fs.rm(base, recursive=True)


def test_a_writer_never_written_leaves_nothing_to_clean(tmp_path):
    # A signal between making the writer and the caller's clean-up block finds nothing there.
    writes.AtomicParquetWriter(str(tmp_path / "v" / "abc.parquet"), SCHEMA)
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == []


class Interrupted(BaseException):
    pass


def test_a_text_write_interrupted_before_its_rename_leaves_no_temporary_file(tmp_path, monkeypatch):
    def interrupted(*_: object) -> None:
        raise Interrupted

    monkeypatch.setattr(writes.os, "replace", interrupted)
    with pytest.raises(Interrupted):
        writes.write_text(str(tmp_path / "_manifest.json"), "{}")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "age", "removed"),
    [
        (".abc.parquet.0123.inprogress", 10, True),  # a staged set of any model
        ("._manifest.json.0123.inprogress", 10, True),
        ("._lock.000003.json.0123.inprogress", 10, True),  # a heartbeat's
        (".predictions.parquet.0123.inprogress", 10, True),  # a switch's link
        (".abc.parquet.0123.inprogress", -10, False),  # started after the moment: not a leftover
        ("predictions.parquet", 10, False),
        ("_lock.000003.json", 10, False),
        ("abc.inprogress", 10, False),  # not hidden: not ours
    ],
)
def test_unfinished_files_older_than_the_moment_are_removed(tmp_path, name, age, removed):
    path = tmp_path / name
    path.write_bytes(b"x")
    (tmp_path / "below").mkdir()
    (tmp_path / "below" / ".x.inprogress").write_bytes(b"another folder's")
    moment = 1_000_000.0
    os.utime(path, (moment - age, moment - age))
    os.utime(tmp_path / "below" / ".x.inprogress", (0, 0))
    gone = writes.remove_unfinished(str(tmp_path), moment)
    assert gone == ([f"{tmp_path}/{name}"] if removed else [])
    assert path.exists() is not removed
    assert (tmp_path / "below" / ".x.inprogress").exists()


def test_unfinished_files_of_a_folder_that_does_not_exist_are_none(tmp_path):
    assert writes.remove_unfinished(str(tmp_path / "nowhere"), 1e12) == []
