"""Where bytes live: reading trip files and committing prediction files, locally or remotely.

This is the only module that knows about fsspec: local paths, `s3://` (set `AWS_ENDPOINT_URL`
for an S3-compatible server) and `https://` all go through it. A model's own files on S3 are
copied by `core.objects` with boto3 alone, which the serving install has without fsspec.
"""

from __future__ import annotations

import functools
import glob
import logging
import os
import posixpath
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, TypedDict

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from ride_duration.core.errors import (
    InputNotFoundError,
    InputUnreachableError,
    InputUnreadableError,
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
    except storage_errors() as error:
        _raise_if_unreachable(error, uri)
        if not isinstance(error, FileNotFoundError):
            raise
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
    found: bool = fs.exists(path)
    return found


def parquet_footer(uri: str) -> tuple[int, dict[bytes, bytes]]:
    """A parquet file's row count and key-value metadata, from its footer alone."""
    fs, path = fsspec.core.url_to_fs(uri)
    with fs.open(path, "rb") as handle:
        metadata = pq.ParquetFile(handle).metadata
        return metadata.num_rows, dict(metadata.metadata or {})


# Where each store puts a file's modification time in its info: local, S3, HTTP, others.
MODIFIED_KEYS = ("mtime", "LastModified", "Last-Modified", "last_modified")


def _raise_if_unreachable(error: BaseException, uri: str) -> None:
    """Raise InputUnreachableError when `error`, or one it came from, says the store did not
    answer (refused, no such host, timed out); an answer, even a refusal, is left to the
    caller. fsspec's HTTP files wrap any failure in FileNotFoundError, s3fs lets botocore's
    connection errors through."""
    unanswered = _unanswered(error)
    if unanswered is None:
        return
    raise InputUnreachableError(
        f"cannot reach {display_uri(uri)}: {first_line(unanswered)}: check the network, or "
        "INPUT_URI_TEMPLATE"
    ) from None


def _unanswered(error: BaseException) -> BaseException | None:
    """The error in `error`'s chain that says a server did not answer, if one does."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, _connection_errors()):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


@functools.cache
def _connection_errors() -> tuple[type[BaseException], ...]:
    """The errors of a server that did not answer, in Python, aiohttp and botocore terms."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError, socket.gaierror]
    with suppress(ImportError):
        from aiohttp import ClientConnectionError

        errors.append(ClientConnectionError)
    with suppress(ImportError):
        from botocore.exceptions import ConnectionError as BotoConnectionError
        from botocore.exceptions import HTTPClientError

        errors += [BotoConnectionError, HTTPClientError]
    return tuple(errors)


class FileInfo(TypedDict):
    """A file's size, version tag (ETag) and modification time, as its store tells them."""

    bytes: int
    etag: str | None
    modified: str | None


def file_info(uri: str) -> FileInfo:
    """Size, version tag and modification time of a file, as the store tells them: an ETag on
    object stores and most HTTP servers, an mtime locally. FileNotFoundError when the file is
    not there, InputUnreachableError when its server does not answer."""
    fs, path = fsspec.core.url_to_fs(uri)
    try:
        info = fs.info(path)
    except storage_errors() as error:
        _raise_if_unreachable(error, uri)
        raise
    tag = info.get("ETag") or info.get("etag")
    mtime = _modified_of(info)
    return {
        "bytes": int(info.get("size") or 0),
        "etag": str(tag).strip('"') if tag else None,
        "modified": str(mtime) if mtime is not None else None,
    }


def _modified_of(info: dict[str, Any]) -> Any:
    """A file's modification time, under whichever key and type its store's info uses."""
    return next((info[key] for key in MODIFIED_KEYS if info.get(key) is not None), None)


def read_text(uri: str) -> str | None:
    """A small text file's content, or None when it does not exist (one GET on a remote
    store: opening a file would ask for its size first)."""
    fs, path = fsspec.core.url_to_fs(uri)
    try:
        content: bytes = fs.cat_file(path)
        return content.decode("utf-8")
    except FileNotFoundError:
        return None


def list_names(folder: str, pattern: str) -> list[str]:
    """The names of the files in `folder` that match the glob `pattern` ([] without the folder)."""
    fs, path = fsspec.core.url_to_fs(folder)
    try:
        found = fs.glob(posixpath.join(glob.escape(path), pattern))
    except FileNotFoundError:
        return []
    return sorted(posixpath.basename(name) for name in found)


def glob_below(root: str, pattern: str) -> list[str]:
    """The paths below `root` (relative to it, sorted) that match the glob `pattern`."""
    fs, path = fsspec.core.url_to_fs(root)
    base = path.rstrip("/") + "/"
    try:
        found = fs.glob(glob.escape(base) + pattern)
    except FileNotFoundError:
        return []
    return sorted(name[len(base) :] for name in found if name.startswith(base))


def read_table(uri: str) -> pa.Table:
    """A whole parquet file as a table, its footer's key-value metadata kept in its schema."""
    fs, path = fsspec.core.url_to_fs(uri)
    with fs.open(path, "rb") as handle:
        return pq.read_table(handle)


def modified(uri: str) -> float | None:
    """When a file was last written (seconds since the epoch), None when the store says not."""
    fs, path = fsspec.core.url_to_fs(uri)
    try:
        info = fs.info(path)
    except FileNotFoundError:
        return None
    moment = _modified_of(info)
    if hasattr(moment, "timestamp"):
        seconds: float = moment.timestamp()
        return seconds
    try:
        return float(moment)
    except (TypeError, ValueError):
        return None


def remove(uri: str) -> None:
    """Delete a file if it exists."""
    fs, path = fsspec.core.url_to_fs(uri)
    with suppress(FileNotFoundError):
        fs.rm(path)


def relative_to(uri: str, root: str) -> str | None:
    """The path of `uri` below `root` ("" for `root` itself; after resolving ".."), None when
    `uri` is not inside `root`."""
    fs_a, path_a = fsspec.core.url_to_fs(uri)
    fs_b, path_b = fsspec.core.url_to_fs(root)
    if protocols(fs_a) != protocols(fs_b):
        return None
    if "file" in protocols(fs_a):
        path_a, path_b = os.path.realpath(path_a), os.path.realpath(path_b)
    else:
        path_a, path_b = posixpath.normpath("/" + path_a), posixpath.normpath("/" + path_b)
    if path_a == path_b:
        return ""
    prefix = path_b.rstrip("/") + "/"
    return path_a[len(prefix) :] if path_a.startswith(prefix) else None


def protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def abort_uploads(fs: fsspec.AbstractFileSystem, folder: str, older_than: float) -> list[str]:
    """Abort the unfinished S3 multipart uploads of keys directly in `folder` (bucket/prefix)
    started before `older_than` (seconds since the epoch); none on other stores. Every page is
    read: s3fs's own listing takes no prefix and reads one page."""
    if "s3" not in protocols(fs):
        return []
    bucket, _, prefix = folder.partition("/")
    markers: dict[str, str] = {}
    prefix, aborted = prefix.rstrip("/") + "/", []
    while True:
        page = fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=prefix, **markers)
        for upload in page.get("Uploads", []):
            key, initiated = upload["Key"], upload.get("Initiated")
            if "/" in key[len(prefix) :] or (initiated and initiated.timestamp() >= older_than):
                continue  # below the folder (another month's), or started since
            fs.call_s3(
                "abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload["UploadId"]
            )
            aborted.append(f"s3://{bucket}/{key}")
        if not page.get("IsTruncated"):
            return aborted
        markers = {k: page.get(f"Next{k}", "") for k in ("KeyMarker", "UploadIdMarker")}
