"""Where bytes live: reading trip files and committing prediction files, locally or remotely.

This is the only module that knows about URLs and fsspec. Local paths, `s3://` (set
`AWS_ENDPOINT_URL` for an S3-compatible server) and `https://` all go through fsspec.
"""

from __future__ import annotations

import functools
import logging
import os
import posixpath
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from ride_duration.core.errors import (
    InputNotFoundError,
    InputUnreadableError,
    OutputWriteError,
    first_line,
)
from ride_duration.core.uris import display_uri

logger = logging.getLogger(__name__)

READ_BUFFER_BYTES = 8 << 20

# The transient failures worth a retry: network and storage I/O, never contract errors.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)


@functools.cache
def storage_errors() -> tuple[type[BaseException], ...]:
    """What storage calls raise when a store misbehaves: OSError, and botocore's and aiohttp's
    connection errors, which s3fs and the http filesystem let through untranslated."""
    errors: list[type[BaseException]] = [OSError]
    with suppress(ImportError):
        from botocore.exceptions import BotoCoreError

        errors.append(BotoCoreError)
    with suppress(ImportError):
        from aiohttp import ClientError

        errors.append(ClientError)
    return tuple(errors)


@contextmanager
def open_parquet(uri: str) -> Iterator[pq.ParquetFile]:
    """Open a parquet file for reading, turning "missing" and "not parquet" into clear errors."""
    try:
        fs, path = fsspec.core.url_to_fs(uri)
        handle = fs.open(path, "rb")
    except FileNotFoundError:
        raise InputNotFoundError(
            f"no trip file at {display_uri(uri)}: the month may not be published yet "
            "(the TLC publishes about two months late) or INPUT_URI_TEMPLATE points elsewhere"
        ) from None
    with handle:
        try:
            # Without pre-buffering, pyarrow decodes a row group page by page: memory follows
            # the batch size, not the row group (TLC files hold a whole month in one group).
            parquet = pq.ParquetFile(handle, pre_buffer=False, buffer_size=READ_BUFFER_BYTES)
        except (pa.ArrowInvalid, OSError) as error:
            if isinstance(error, TRANSIENT_ERRORS):
                raise
            raise InputUnreadableError(
                f"{display_uri(uri)} is not a readable parquet file ({first_line(error)}): "
                "download it again"
            ) from None
        yield parquet


def iter_batches(
    parquet: pq.ParquetFile, columns: list[str], batch_size: int, uri: str
) -> Iterator[pa.RecordBatch]:
    """The file's `columns`, `batch_size` rows at a time; a corrupt file is a clear error."""
    try:
        yield from parquet.iter_batches(batch_size=batch_size, columns=columns)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as error:
        if isinstance(error, TRANSIENT_ERRORS):
            raise
        raise InputUnreadableError(
            f"{display_uri(uri)} is truncated or corrupt ({first_line(error)}): download it again"
        ) from None


def exists(uri: str) -> bool:
    """Whether a file exists at `uri`."""
    fs, path = fsspec.core.url_to_fs(uri)
    return fs.exists(path)


class AtomicParquetWriter:
    """Writes one parquet file that appears at its final location only when complete.

    Locally the file is written beside the target under a hidden name and renamed into place
    (readers of hive-partitioned folders skip names starting with "."). On object stores the
    target is one upload that the store publishes only when it completes; a failure aborts it.
    Use as a context manager: leaving it with an exception discards everything written.
    """

    def __init__(self, uri: str, schema: pa.Schema) -> None:
        self.uri = uri
        self.schema = schema
        self.rows_written = 0
        self._fs, self._path = fsspec.core.url_to_fs(uri)
        self._local = "file" in _protocols(self._fs)
        _make_folder(self._fs, posixpath.dirname(self._path))
        self._staging = _staging_path(self._path) if self._local else self._path
        self._handle = self._fs.open(self._staging, "wb")
        self._writer = pq.ParquetWriter(self._handle, schema, compression="snappy")

    def write(self, table: pa.Table) -> None:
        """Append rows."""
        self._writer.write_table(table)
        self.rows_written += table.num_rows

    def commit(self) -> None:
        """Finish the file and publish it at its final location (locally: synced, renamed into
        place, and its folder synced, so that a crash leaves the old file or the new, whole)."""
        self._writer.close()
        if self._local:
            self._handle.flush()
            _sync(self._handle)
        self._handle.close()
        if self._local:
            self._fs.mv(self._staging, self._path)
            _sync_folder(posixpath.dirname(self._path))

    def discard(self) -> None:
        """Drop everything written; nothing appears at the final location. Never raises."""
        try:
            self._writer.close()
        except Exception:
            logger.debug("closing a discarded parquet writer failed", exc_info=True)
        try:
            if self._local:
                self._handle.close()
                self._fs.rm(self._staging)
            else:
                # fsspec's buffered files abort the multipart upload instead of completing it.
                self._handle.discard()
        except storage_errors():
            # Unreachable storage: an unfinished upload never becomes an object, and a local
            # staging file keeps its hidden name (the next commit of this file removes it).
            logger.warning("could not clean up %s", display_uri(self._staging), exc_info=True)

    def remove_stale_staging(self) -> None:
        """Remove staging files of this output left by runs that died (call under the lock)."""
        if not self._local:
            return
        for leftover in self._fs.glob(_staging_path(self._path, "*")):
            if leftover != self._staging:
                self._fs.rm(leftover)

    def __enter__(self) -> AtomicParquetWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()


def _sync(handle: object) -> None:
    """fsync a local file's handle (fsspec's local files keep the OS file as `f`)."""
    raw = getattr(handle, "f", handle)
    with suppress(AttributeError, OSError, ValueError):
        os.fsync(raw.fileno())


def _sync_folder(directory: str) -> None:
    """fsync a local folder, so that a rename in it is on disk (POSIX; a no-op elsewhere)."""
    with suppress(OSError):
        descriptor = os.open(directory or ".", os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _staging_path(path: str, token: str | None = None) -> str:
    """The hidden name beside `path` under which a local file is written before its rename.

    Readers of hive-partitioned folders skip names starting with "."; `token` (a fresh one by
    default, "*" to glob) keeps concurrent writers apart.
    """
    directory, name = posixpath.split(path)
    return posixpath.join(directory, f".{name}.{token or uuid.uuid4().hex}.inprogress")


def _make_folder(fs: fsspec.AbstractFileSystem, directory: str) -> None:
    """Create a local folder. Object stores need none, and s3fs would create a missing bucket."""
    if "file" in _protocols(fs):
        fs.makedirs(directory, exist_ok=True)


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def parquet_rows(uri: str) -> int:
    """The number of rows of a parquet file, from its footer."""
    fs, path = fsspec.core.url_to_fs(uri)
    with fs.open(path, "rb") as handle:
        return pq.ParquetFile(handle).metadata.num_rows


def file_info(uri: str) -> dict:
    """Size and version tag of a file: its ETag on object stores, its mtime locally."""
    fs, path = fsspec.core.url_to_fs(uri)
    info = fs.info(path)
    tag = info.get("ETag") or info.get("etag")
    mtime = info.get("mtime") or info.get("LastModified") or info.get("last_modified")
    return {
        "bytes": int(info.get("size") or 0),
        "etag": str(tag).strip('"') if tag else None,
        "modified": str(mtime) if mtime is not None else None,
    }


def read_text(uri: str) -> str | None:
    """A small text file's content, or None when it does not exist."""
    fs, path = fsspec.core.url_to_fs(uri)
    try:
        with fs.open(path, "rt", encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def write_text(uri: str, text: str) -> None:
    """Write a small text file atomically: readers see the old content or the new, whole."""
    fs, path = fsspec.core.url_to_fs(uri)
    _make_folder(fs, posixpath.dirname(path))
    if "file" in _protocols(fs):
        staging = _staging_path(path)
        with open(staging, "wb") as handle:
            handle.write(text.encode())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(staging, path)
        _sync_folder(posixpath.dirname(path))
    else:
        fs.pipe_file(path, text.encode())  # one PUT: whole or absent


def create_exclusive(uri: str, text: str) -> bool:
    """Create a small file only if none exists (atomic); False when it already exists."""
    fs, path = fsspec.core.url_to_fs(uri)
    directory, _ = posixpath.split(path)
    _make_folder(fs, directory)
    if "file" in _protocols(fs):
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        return True
    try:
        fs.pipe_file(path, text.encode(), mode="create")  # S3: If-None-Match: *
    except FileExistsError:
        return False
    except OSError as error:
        # s3fs passes botocore's refusal of If-None-Match through as an OSError whose text is
        # S3's error code, "PreconditionFailed" (HTTP 412), when the object exists.
        if "PreconditionFailed" in str(error) or "412" in str(error):
            return False
        raise
    return True


def list_names(folder: str, pattern: str) -> list[str]:
    """The names of the files in `folder` that match the glob `pattern` ([] without the folder)."""
    fs, path = fsspec.core.url_to_fs(folder)
    try:
        found = fs.glob(posixpath.join(path, pattern))
    except FileNotFoundError:
        return []
    return sorted(posixpath.basename(name) for name in found)


def modified(uri: str) -> float | None:
    """When a file was last written (seconds since the epoch), None when the store says not."""
    fs, path = fsspec.core.url_to_fs(uri)
    try:
        info = fs.info(path)
    except FileNotFoundError:
        return None
    moment = info.get("mtime") or info.get("LastModified") or info.get("last_modified")
    if hasattr(moment, "timestamp"):
        return moment.timestamp()
    try:
        return float(moment)
    except (TypeError, ValueError):
        return None


def remove(uri: str) -> None:
    """Delete a file if it exists."""
    fs, path = fsspec.core.url_to_fs(uri)
    with suppress(FileNotFoundError):
        fs.rm(path)


def is_within(uri: str, root: str) -> bool:
    """Whether `uri` is `root` itself or a location below it (after resolving "..")."""
    fs_a, path_a = fsspec.core.url_to_fs(uri)
    fs_b, path_b = fsspec.core.url_to_fs(root)
    if _protocols(fs_a) != _protocols(fs_b):
        return False
    if "file" in _protocols(fs_a):
        path_a, path_b = os.path.realpath(path_a), os.path.realpath(path_b)
    else:
        path_a, path_b = posixpath.normpath("/" + path_a), posixpath.normpath("/" + path_b)
    return path_a == path_b or path_a.startswith(path_b.rstrip("/") + "/")


# What refuses a write for good: retrying will not help (permissions, a file in the way).
_REFUSALS = (PermissionError, NotADirectoryError, FileExistsError, IsADirectoryError)


@contextmanager
def writing(uri: str) -> Iterator[None]:
    """Turn a store's failure while writing `uri` into one clear OutputWriteError.

    Network failures are marked transient (a retry may pass); refusals are not.
    """
    try:
        yield
    except storage_errors() as error:
        # s3fs reports a missing bucket as FileNotFoundError("The specified bucket does not
        # exist"); any other FileNotFoundError is not about the output location.
        no_bucket = "bucket" in str(error).lower()
        if isinstance(error, FileNotFoundError) and not no_bucket:
            raise
        failure = OutputWriteError(
            f"cannot write {display_uri(uri)}: {first_line(error)}; check OUTPUT_ROOT and that "
            "it accepts writes"
        )
        failure.transient = not (isinstance(error, _REFUSALS) or no_bucket)
        raise failure from error


def copy_folder(uri: str, local_folder: str, only: tuple[str, ...] | None = None) -> str:
    """Copy the files below `uri` (an object store prefix) into `local_folder`; return it.

    With `only`, just those files of the folder's top level, the ones that exist.
    """
    fs, path = fsspec.core.url_to_fs(uri)
    if only is None:
        fs.get(path.rstrip("/") + "/", local_folder.rstrip("/") + "/", recursive=True)
        return local_folder
    for name in only:
        with suppress(FileNotFoundError):
            fs.get(posixpath.join(path, name), posixpath.join(local_folder, name))
    return local_folder
