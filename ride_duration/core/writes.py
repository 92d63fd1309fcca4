"""Writes to local folders and object stores that never leave anything half-written.

Files are staged and renamed into place (or uploaded whole), synced, and a store's failure
is one OutputWriteError.
"""

from __future__ import annotations

import errno
import logging
import os
import posixpath
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from ride_duration.core import storage
from ride_duration.core.errors import OutputWriteError, first_line
from ride_duration.core.storage import protocols, storage_errors
from ride_duration.core.uris import display_uri

logger = logging.getLogger(__name__)


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
        self._local = "file" in protocols(self._fs)
        self._staging = _staging_path(self._path) if self._local else self._path
        self._handle: Any = None  # fsspec's file (untyped), opened at the first write
        self._writer: pq.ParquetWriter | None = None
        with writing(uri):
            _make_folder(self._fs, posixpath.dirname(self._path))

    def _opened(self) -> pq.ParquetWriter:
        """The parquet writer, its file opened at the first write: until then, nothing to clean."""
        if self._writer is None:
            with writing(self.uri):
                self._handle = self._fs.open(self._staging, "wb")
            self._writer = pq.ParquetWriter(self._handle, self.schema, compression="snappy")
        return self._writer

    def write(self, table: pa.Table) -> None:
        """Append rows."""
        writer = self._opened()
        with writing(self.uri):
            writer.write_table(table)
        self.rows_written += table.num_rows

    def commit(self, metadata: dict[bytes, bytes] | None = None) -> None:
        """Finish the file, with `metadata` in its footer, and publish it at its final location
        (locally: synced, renamed into place, and its folder synced, so that a crash leaves the
        old file or the new, whole)."""
        writer = self._opened()
        with writing(self.uri):
            if metadata:
                writer.add_key_value_metadata(metadata)
            writer.close()
            if self._local:
                self._handle.flush()
                _sync(self._handle)
            self._handle.close()
            if self._local:
                os.replace(self._staging, self._path)
                _sync_folder(posixpath.dirname(self._path))

    def discard(self) -> None:
        """Drop everything written; nothing appears at the final location. Never raises."""
        try:
            if self._writer is not None:
                self._writer.close()
        except Exception:
            logger.debug("closing a discarded parquet writer failed", exc_info=True)
        try:
            if self._local:
                if self._handle is not None:
                    self._handle.close()
                with suppress(FileNotFoundError):  # also a file whose handle was never kept
                    self._fs.rm(self._staging)
            elif self._handle is not None:
                # fsspec's buffered files abort the multipart upload instead of completing it.
                self._handle.discard()
        except storage_errors():
            # Unreachable storage: the next run of this month removes either (remove_unfinished).
            logger.warning("could not clean up %s", display_uri(self._staging), exc_info=True)

    def __enter__(self) -> AtomicParquetWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is not None:
            self.discard()
            return
        try:
            self.commit()
        except BaseException:
            self.discard()
            raise


def _sync(handle: Any) -> None:
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
    if "file" in protocols(fs):
        fs.makedirs(directory, exist_ok=True)


def write_text(uri: str, text: str) -> None:
    """Write a small text file atomically: readers see the old content or the new, whole."""
    write_bytes(uri, text.encode())


def write_bytes(uri: str, data: bytes) -> None:
    """Write a small file atomically: readers see the old content or the new, whole."""
    fs, path = fsspec.core.url_to_fs(uri)
    _make_folder(fs, posixpath.dirname(path))
    if "file" in protocols(fs):
        staging = _staging_path(path)
        try:
            with open(staging, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(staging, path)
        except BaseException:
            with suppress(OSError):
                os.remove(staging)
            raise
        _sync_folder(posixpath.dirname(path))
    else:
        fs.pipe_file(path, data)  # one PUT: whole or absent


def publish_copy(source: str, target: str) -> None:
    """Put a copy of the file `source` at `target` in one atomic step: readers of `target` see
    the old file or the new one, whole, never neither.

    Locally the copy is a hard link (no bytes are copied; a plain copy where links are not
    supported) renamed over the target, then synced; on object stores it is one server-side
    copy, which replaces the target object at once.
    """
    fs, path = fsspec.core.url_to_fs(target)
    _, source_path = fsspec.core.url_to_fs(source)
    if "file" not in protocols(fs):
        fs.copy(source_path, path)
        return
    directory = posixpath.dirname(path)
    _make_folder(fs, directory)
    staging = _staging_path(path)
    try:
        os.link(source_path, staging)
    except OSError:  # a file system without hard links (some network and FUSE mounts)
        fs.copy(source_path, staging)
    try:
        os.replace(staging, path)
    finally:
        # Gone once renamed; still there when the rename failed, or when the target already
        # was a link of the source (renaming one link of a file over another does nothing).
        with suppress(OSError):
            os.remove(staging)
    _sync_folder(directory)


# An exclusive creation not yet linked into place: `{name}.{token}.creating` (a lock's name
# starts with "_", which keeps readers of OUTPUT_ROOT off it).
CREATING_SUFFIX = ".creating"
# How a file system without hard links refuses one (some network and FUSE mounts).
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK}


def remove_unfinished(folder: str, older_than: float) -> list[str]:
    """Remove what runs that died left unfinished directly in `folder` before `older_than`
    (seconds since the epoch, on the store's clock): hidden ".inprogress" files, and on S3
    unfinished multipart uploads. Call it holding the folder's lock; returns what it removed."""
    fs, path = fsspec.core.url_to_fs(folder)
    if "file" not in protocols(fs):
        return storage.abort_uploads(fs, path, older_than)
    names = os.listdir(path) if os.path.isdir(path) else []
    found = [f"{path}/{name}" for name in names if name[0] == "." and name.endswith(".inprogress")]
    old = [file for file in found if (storage.modified(file) or older_than) < older_than]
    for file in old:
        with suppress(FileNotFoundError):  # removed meanwhile by the run that wrote it
            os.remove(file)
    return old


def create_exclusive(uri: str, text: str) -> bool:
    """Create a small file, whole, only if none exists (atomic); False when it already exists.

    Locally the text is synced under a temporary name, then hard-linked into place (a link fails
    when the target exists): a crash leaves no empty file. On S3 it is one conditional PUT.
    """
    fs, path = fsspec.core.url_to_fs(uri)
    directory, _ = posixpath.split(path)
    _make_folder(fs, directory)
    if "file" in protocols(fs):
        return _create_exclusive_locally(path, text.encode())
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


def _create_exclusive_locally(path: str, data: bytes) -> bool:
    """Write `data` to a temporary file, sync it, then link it to `path` unless that exists."""
    staging = f"{path}.{uuid.uuid4().hex}{CREATING_SUFFIX}"
    try:
        _write_new(staging, data)
        os.link(staging, path)
    except (FileExistsError, FileNotFoundError):  # taken, or cleaned up as a dead run's
        return False
    except OSError as error:
        if error.errno not in _NO_LINKS:
            raise
        try:
            _write_new(path, data)  # no hard links here: the target itself, created exclusively
        except FileExistsError:
            return False
    finally:
        with suppress(OSError):
            os.remove(staging)
    _sync_folder(posixpath.dirname(path))
    return True


def _write_new(path: str, data: bytes) -> None:
    """Create `path` (FileExistsError when it exists), write `data` and sync it."""
    descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


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
