"""The manifest of a scored month: what was read, dropped, scored and written, by which model.

Each output file `{run id}.parquet` gets `_manifest-{run id}.json` beside it, written last:
a month counts as done for a model only when that manifest exists and matches its file.
Model versions sit side by side in a partition, so each has its own manifest. The leading
underscore keeps parquet readers (pyarrow datasets, Spark, pandas) from reading it as data.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import posixpath
import socket
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from ride_duration import storage

MANIFEST_VERSION = 1
logger = logging.getLogger(__name__)


def manifest_uri(output_uri: str) -> str:
    """Where the manifest of an output file goes."""
    directory, name = posixpath.split(output_uri)
    return storage.join(directory, f"_manifest-{name.removesuffix('.parquet')}.json")


def lock_uri(output_uri: str) -> str:
    """The lock that one run holds while it scores a month with a model."""
    directory, name = posixpath.split(output_uri)
    return storage.join(directory, f"_lock-{name.removesuffix('.parquet')}.json")


@functools.cache
def code_version() -> str:
    """`CODE_VERSION` if set (images set it at build time), else the git commit, else unknown."""
    if os.environ.get("CODE_VERSION"):
        return os.environ["CODE_VERSION"]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        return f"git:{commit}" if commit else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write(output_uri: str, content: dict) -> None:
    """Write the manifest of `output_uri` (atomically), after the output itself."""
    storage.write_text(manifest_uri(output_uri), json.dumps(content, indent=2, sort_keys=True))


def read(output_uri: str) -> dict | None:
    """The manifest of `output_uri`, or None if it is missing or unreadable."""
    text = storage.read_text(manifest_uri(output_uri))
    if text is None:
        return None
    try:
        content = json.loads(text)
    except json.JSONDecodeError:
        return None
    return content if isinstance(content, dict) else None


def is_complete(output_uri: str) -> bool:
    """Whether `output_uri` holds a whole month: a valid manifest that matches the file."""
    content = read(output_uri)
    if not content or content.get("manifest_version") != MANIFEST_VERSION:
        return False
    expected = content.get("output", {})
    try:
        info = storage.file_info(output_uri)
        rows = storage.parquet_rows(output_uri)
    except (FileNotFoundError, OSError, ValueError):
        return False
    return (
        expected.get("uri") == storage.display_uri(output_uri)
        and expected.get("bytes") == info["bytes"]
        and expected.get("rows") == rows
        and (expected.get("etag") is None or expected.get("etag") == info["etag"])
    )


class MonthLock:
    """An exclusive claim on (month, model) while a run scores it.

    Created with an atomic exclusive create (a local O_EXCL file, an S3 If-None-Match PUT). A
    lock left by a dead run is taken over: on the same host when its process is gone, anywhere
    once it is older than `stale_after_seconds`.
    """

    def __init__(self, output_uri: str, owner: str, stale_after_seconds: float) -> None:
        self.uri = lock_uri(output_uri)
        self.stale_after_seconds = stale_after_seconds
        self.content = {
            "owner": owner,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
            "since_epoch": time.time(),
        }

    def acquire(self) -> dict | None:
        """Take the lock; return the holder's description when another live run has it."""
        for _ in range(2):
            if storage.create_exclusive(self.uri, json.dumps(self.content)):
                return None
            holder = self._holder()
            if holder is not None and not self._is_stale(holder):
                return holder
            storage.remove(self.uri)  # stale or unreadable: take it over
        return self._holder() or {"owner": "unknown"}

    def release(self) -> None:
        """Give the lock back (only if it is still ours); never raises.

        When the storage is unreachable the lock stays behind, and the next run takes it over
        once this process is gone (same host) or the lock is stale.
        """
        try:
            holder = self._holder()
            if (
                holder
                and holder.get("owner") == self.content["owner"]
                and holder.get("pid") == self.content["pid"]
            ):
                storage.remove(self.uri)
        except storage.storage_errors():
            logger.warning("could not release %s", storage.display_uri(self.uri), exc_info=True)

    def _holder(self) -> dict | None:
        text = storage.read_text(self.uri)
        try:
            return json.loads(text) if text else None
        except json.JSONDecodeError:
            return None

    def _is_stale(self, holder: dict) -> bool:
        if time.time() - float(holder.get("since_epoch", 0)) > self.stale_after_seconds:
            return True
        if holder.get("host") == socket.gethostname():
            try:
                os.kill(int(holder.get("pid", 0)), 0)
            except ProcessLookupError:
                return True
            except (PermissionError, ValueError):
                return False
        return False
