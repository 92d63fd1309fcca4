"""Reading trip files and committing prediction files: `ride_duration.core.storage`."""

from __future__ import annotations

import http.server
import io
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ride_duration.batch.month import score_month
from ride_duration.batch.paths import MonthOutput
from ride_duration.batch.result import MonthResult
from ride_duration.batch.sink import ParquetFolder
from ride_duration.core import storage, writes
from ride_duration.core.errors import (
    InputNotFoundError,
    InputUnreachableError,
    InputUnreadableError,
    SchemaError,
)
from ride_duration.core.months import Month
from ride_duration.core.settings import Settings
from ride_duration.model.resolve import ModelRef
from ride_duration.model.runtimes.records import RecordsPredictor
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


def files_below(root: Path) -> list[str]:
    """Every file below `root` (hidden ones too), as paths relative to it."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


class Constant:
    """A model that predicts 10 minutes for every trip."""

    def predict(self, records: list[dict]) -> list[float]:
        return [10.0] * len(records)


def score(input_path: Path, root: Path) -> MonthResult:
    return score_month(
        taxi_type="green",
        month=Month(2021, 3),
        input_uri=str(input_path),
        sink=ParquetFolder(MonthOutput(str(root), "green", Month(2021, 3)), 600),
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
    root = tmp_path / "out"
    with pytest.raises(InputUnreadableError, match=r"trips\.parquet"):
        score(path, root)
    assert files_below(root) == []  # no set, no staging file, no lock left behind


def test_scoring_a_missing_trip_file_is_input_not_found_and_writes_nothing(tmp_path):
    with pytest.raises(InputNotFoundError):
        score(tmp_path / "green_tripdata_2021-03.parquet", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_scoring_a_good_file_through_the_same_helper_works(tmp_path):
    # the control for the two tests above: the damage, not the helper, makes them fail
    path = write_trips(tmp_path / "trips.parquet", make_trips("green", 2021, 3, rows=3_000))
    root = tmp_path / "out"
    result = score(path, root)
    assert result.rows_read == 3_000
    current = Path(MonthOutput(str(root), "green", Month(2021, 3)).current)
    assert pq.read_table(current).num_rows == result.rows_scored > 0
    assert set(pq.read_table(current)["predicted_duration"].to_pylist()) == {10.0}
    assert files_below(root) == [
        "_monitoring/green-2021-03.parquet",
        "_versions/taxi_type=green/year=2021/month=03/abc.parquet",
        "taxi_type=green/year=2021/month=03/_manifest.json",
        "taxi_type=green/year=2021/month=03/predictions.parquet",
    ]


def test_scoring_a_file_of_another_type_is_a_schema_error_and_writes_nothing(tmp_path):
    path = write_trips(tmp_path / "trips.parquet", make_trips("yellow", 2021, 3, rows=100))
    with pytest.raises(SchemaError):
        score(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- parquet_footer and read_table ------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "metadata"),
    [
        (0, {}),
        (25, {}),
        (25, {b"ride_duration.manifest": b'{"rows": 25}'}),
        (3, {b"a": b"1", b"b": "é".encode(), b"empty": b""}),
    ],
)
def test_the_footer_tells_rows_and_metadata_and_the_table_keeps_them(tmp_path, count, metadata):
    path = tmp_path / "a.parquet"
    pq.write_table(rows(0, count).replace_schema_metadata(metadata), path)
    found_rows, found_metadata = storage.parquet_footer(str(path))
    assert found_rows == count
    assert {k: v for k, v in found_metadata.items() if k != b"ARROW:schema"} == metadata
    table = storage.read_table(str(path))
    assert table.num_rows == count
    assert table.to_pylist() == rows(0, count).to_pylist()
    assert dict(table.schema.metadata or {}) == metadata


@pytest.mark.parametrize(
    ("content", "error"),
    [(None, FileNotFoundError), (b"not parquet", pa.ArrowInvalid)],
    ids=["missing", "not parquet"],
)
def test_a_footer_that_is_not_there_is_an_error(tmp_path, content, error):
    path = tmp_path / "a.parquet"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(error):
        storage.parquet_footer(str(path))


# --- relative_to ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "root", "below"),
    [
        ("out", "out", ""),
        ("out/", "out", ""),
        ("out", "out/", ""),
        ("out/a", "out", "a"),
        ("out/a/b.parquet", "out/", "a/b.parquet"),
        ("out/./a//b", "out", "a/b"),
        ("out/x/../a", "out", "a"),
        ("in/../out/a", "out", "a"),
        ("out/..", "out", None),
        ("out/../elsewhere", "out", None),
        ("out-scratch/a", "out", None),
        ("outa", "out", None),
        ("ou", "out", None),
        ("/etc", "out", None),
        ("out", "out/a", None),
        ("s3://b/out", "s3://b/out", ""),
        ("s3://b/out/", "s3://b/out", ""),
        ("s3://b/out/_x/y", "s3://b/out", "_x/y"),
        ("s3://b/out/x/../_y", "s3://b/out", "_y"),
        ("s3://b/out/../other", "s3://b/out", None),
        ("s3://b/out-x/a", "s3://b/out", None),
        ("s3://b2/out/a", "s3://b/out", None),
        ("s3://b/out/a", "s3://b", "out/a"),
        ("s3://b/out/a", "out", None),
        ("out/a", "s3://b/out", None),
        ("memory://out/a", "memory://out", "a"),
        ("memory://out/a", "s3://out", None),
    ],
)
def test_relative_to_says_where_a_location_lies_below_a_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uri: str, root: str, below: str | None
):
    monkeypatch.chdir(tmp_path)
    assert storage.relative_to(uri, root) == below


@pytest.mark.parametrize(
    ("link", "to", "uri", "below"),
    [
        ("out/_escape", "elsewhere", "out/_escape/a", None),
        ("outside", "out/_inside", "outside/a", "_inside/a"),
        ("alias", "out", "alias/a", "a"),
    ],
    ids=["a link out of the root", "a link into the root", "the root under another name"],
)
def test_relative_to_follows_local_links(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    link: str,
    to: str,
    uri: str,
    below: str | None,
):
    monkeypatch.chdir(tmp_path)
    for folder in ("out", "elsewhere", "out/_inside"):
        (tmp_path / folder).mkdir(exist_ok=True)
    (tmp_path / link).symlink_to(tmp_path / to)
    assert storage.relative_to(uri, "out") == below


# --- glob_below -------------------------------------------------------------------------------

TREE = [
    "taxi_type=green/year=2021/month=03/predictions.parquet",
    "taxi_type=green/year=2021/month=03/_manifest.json",
    "taxi_type=green/year=2021/month=03/_lock.000002.json",
    "taxi_type=yellow/year=2021/month=04/predictions.parquet",
    "_versions/taxi_type=green/year=2021/month=03/abc.parquet",
    "_versions/taxi_type=green/year=2021/month=03/def.parquet",
]


@pytest.mark.parametrize("prefix", ["", "memory://"])
@pytest.mark.parametrize(
    ("root", "pattern", "found"),
    [
        (
            "out",
            "taxi_type=*/year=*/month=*/predictions.parquet",
            [
                "taxi_type=green/year=2021/month=03/predictions.parquet",
                "taxi_type=yellow/year=2021/month=04/predictions.parquet",
            ],
        ),
        (
            "out/",
            "taxi_type=green/*/*/_*",
            [
                "taxi_type=green/year=2021/month=03/_lock.000002.json",
                "taxi_type=green/year=2021/month=03/_manifest.json",
            ],
        ),
        (
            "out",
            "_versions/*/*/*/*.parquet",
            [
                "_versions/taxi_type=green/year=2021/month=03/abc.parquet",
                "_versions/taxi_type=green/year=2021/month=03/def.parquet",
            ],
        ),
        ("out", "*/*/*/*.csv", []),
        ("out", "taxi_type=red/*", []),
        ("out/taxi_type=yellow", "*/*/*", ["year=2021/month=04/predictions.parquet"]),
        ("out-other", "*", ["stray.parquet"]),  # a sibling whose name starts alike
        ("nowhere", "*/*", []),
    ],
)
def test_glob_below_finds_paths_relative_to_the_root(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    prefix: str,
    root: str,
    pattern: str,
    found: list[str],
):
    monkeypatch.chdir(tmp_path)
    base = f"{prefix}{tmp_path.as_posix().lstrip('/')}/" if prefix else ""
    for name in [*(f"out/{n}" for n in TREE), "out-other/stray.parquet"]:
        writes.write_text(base + name, "x")
    try:
        assert storage.glob_below(base + root, pattern) == found
    finally:
        if prefix:
            fsspec.filesystem("memory").rm(base, recursive=True)


# --- exists ----------------------------------------------------------------------------------


def test_exists(tmp_path):
    path = tmp_path / "a.parquet"
    assert not storage.exists(str(path))
    path.write_bytes(b"x")
    assert storage.exists(str(path))


@pytest.mark.parametrize("listing", ["glob_below", "list_names"])
def test_a_root_whose_name_has_glob_characters_is_listed_as_it_is(tmp_path: Path, listing: str):
    writes.write_text(str(tmp_path / "run[1]" / "a.json"), "x")
    writes.write_text(str(tmp_path / "run1" / "b.json"), "x")
    assert getattr(storage, listing)(str(tmp_path / "run[1]"), "*.json") == ["a.json"]


# --- a server that does not answer is not a missing file --------------------------------------


class _NotFound(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:
        self.send_response(404)
        self.end_headers()

    do_GET = do_HEAD

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def trip_server() -> Iterator[str]:
    """A local HTTP server that has no file at all (404 to everything)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _open(uri: str) -> None:
    with storage.open_parquet(uri):
        pass


@pytest.mark.parametrize("reach", [storage.file_info, _open], ids=["file_info", "open_parquet"])
def test_a_server_that_does_not_answer_is_unreachable_not_a_missing_month(reach):
    uri = f"http://127.0.0.1:{_closed_port()}/green_tripdata_2021-03.parquet"
    with pytest.raises(InputUnreachableError) as unreachable:
        reach(uri)
    assert str(unreachable.value).startswith(f"cannot reach {uri}: Cannot connect to host")
    assert unreachable.value.transient


def test_a_server_that_answers_404_has_no_such_file(trip_server):
    uri = f"{trip_server}/green_tripdata_2021-03.parquet"
    with pytest.raises(FileNotFoundError):
        storage.file_info(uri)
    with pytest.raises(InputNotFoundError, match="no trip file at "):
        _open(uri)


def _chained(error: BaseException, cause: BaseException | None) -> BaseException:
    error.__cause__ = cause
    return error


def _store_errors() -> list[tuple[str, BaseException, type[BaseException]]]:
    """(case, what the store raises, what reading a trip file then raises)."""
    import aiohttp
    import botocore.exceptions as boto

    refused = ConnectionRefusedError(111, "Connection refused")
    return [
        ("local file missing", FileNotFoundError("x"), InputNotFoundError),
        (
            "HTTP 404",
            _chained(FileNotFoundError("x"), _response_error(aiohttp, 404)),
            InputNotFoundError,
        ),
        (
            "HTTP 403 (a CDN's missing key)",
            _chained(FileNotFoundError("x"), _response_error(aiohttp, 403)),
            InputNotFoundError,
        ),
        (
            "HTTP host refused",
            _chained(FileNotFoundError("x"), aiohttp.ClientConnectionError("refused")),
            InputUnreachableError,
        ),
        (
            "S3 endpoint refused",
            _chained(boto.EndpointConnectionError(endpoint_url="http://h/b/k"), refused),
            InputUnreachableError,
        ),
        (
            "S3 no such bucket",
            _chained(FileNotFoundError("The specified bucket does not exist"), None),
            InputNotFoundError,
        ),
        ("no such host", socket.gaierror(-2, "Name or service not known"), InputUnreachableError),
    ]


def _response_error(aiohttp, status: int) -> BaseException:
    return aiohttp.ClientResponseError(None, (), status=status)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("case", "raised", "expected"), _store_errors(), ids=[c[0] for c in _store_errors()]
)
def test_a_store_that_did_not_answer_is_told_apart_from_a_file_that_is_not_there(
    monkeypatch, case, raised, expected
):
    class Store:
        def info(self, path):
            raise raised

        def open(self, path, mode):
            raise raised

    monkeypatch.setattr(storage.fsspec.core, "url_to_fs", lambda uri: (Store(), uri))
    with pytest.raises(expected):
        _open("s3://trips/green_tripdata_2021-03.parquet")
    if expected is InputNotFoundError:
        with pytest.raises(FileNotFoundError):
            storage.file_info("s3://trips/green_tripdata_2021-03.parquet")
    else:
        with pytest.raises(expected):
            storage.file_info("s3://trips/green_tripdata_2021-03.parquet")
