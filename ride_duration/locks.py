"""The per-month lock: one run at a time scores a month with a model.

The lock is a small file beside the month's output, created with an atomic exclusive create
(a local O_EXCL file, an S3 If-None-Match PUT). A lock left by a dead run is taken over: on the
same host when its process is gone, anywhere once it is older than `stale_after_seconds`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime

from ride_duration import storage
from ride_duration.errors import MonthBusyError
from ride_duration.layout import MonthOutput

logger = logging.getLogger(__name__)


class MonthLock:
    """An exclusive claim on (month, model) while a run scores it."""

    def __init__(self, output: MonthOutput, owner: str, stale_after_seconds: float) -> None:
        self.output = output
        self.uri = output.lock
        self.stale_after_seconds = stale_after_seconds
        self.content = {
            "owner": owner,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
            "since_epoch": time.time(),
        }

    @contextlib.contextmanager
    def held(self, label: str) -> Iterator[None]:
        """Hold the lock for the block; MonthBusyError when another live run holds it."""
        with storage.writing(self.output.data):
            holder = self.acquire()
        if holder is not None:
            raise MonthBusyError(
                f"{label} is being scored with this model by {holder.get('owner')} on "
                f"{holder.get('host')} since {holder.get('since')}: wait for it, or delete "
                f"{storage.display_uri(self.uri)} if that run is dead"
            )
        try:
            yield
        finally:
            self.release()

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
