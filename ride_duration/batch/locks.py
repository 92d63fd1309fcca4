"""The per-month lock: one run at a time scores a month.

A lock is a small file beside the month's output, one file per generation:
`_lock.{generation}.json`. The newest generation is the lock; a run takes it by creating
the next generation with an atomic exclusive create (a local O_EXCL file, an S3 If-None-Match
PUT), so that of any number of runs racing for a free or stale lock exactly one succeeds, and
no run can ever create a generation that already exists. The holder rewrites its file while
it scores (a heartbeat) and deletes it at the end; a run that takes over deletes the older
generations.

A holder is gone when its heartbeat is older than `stale_after_seconds`, or, on the same host
since the same boot, when its process is no longer the one that took the lock (a pid alone
may have been reused). A lock file that does not read is taken for one being written while it
is younger than that, and for a dead one after.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

from ride_duration.batch.paths import LockFiles
from ride_duration.core import storage, uris, writes
from ride_duration.core.errors import MonthBusyError

logger = logging.getLogger(__name__)

TAKE_ATTEMPTS = 5


def boot_id() -> str | None:
    """This host's boot, where the system tells it (Linux): a pid means nothing across boots."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def process_start(pid: int) -> str | None:
    """When process `pid` started (Linux clock ticks since boot), None when it does not exist
    or the system does not tell."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            stat = handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]  # field 22, after the command's parentheses


class MonthLock:
    """An exclusive claim on a month while a run scores it."""

    def __init__(self, files: LockFiles, owner: str, stale_after_seconds: float) -> None:
        self.files = files
        self.stale_after_seconds = stale_after_seconds
        self.refresh_seconds = max(1.0, min(60.0, stale_after_seconds / 4))
        self.generation: int | None = None
        self.content = {
            "owner": owner,
            "token": uuid.uuid4().hex,
            "host": socket.gethostname(),
            "boot_id": boot_id(),
            "pid": os.getpid(),
            "pid_start": process_start(os.getpid()),
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
            "heartbeat": time.time(),
        }
        self._stop = threading.Event()
        self._lost = threading.Event()

    @contextlib.contextmanager
    def held(self, label: str) -> Iterator[MonthLock]:
        """Hold the lock for the block, its heartbeat running; MonthBusyError when another
        live run holds it."""
        with writes.writing(self.files.prefix):
            holder = self.acquire()
        if holder is not None:
            where = uris.display_uri(self.files.prefix) + ".*.json"
            if "unreadable_age" in holder:
                raise MonthBusyError(
                    f"{label} is locked by {where}, which does not read as a lock (written "
                    f"{holder['unreadable_age']:.0f} s ago): it is taken over after "
                    "LOCK_STALE_SECONDS; delete it if no run is scoring this month"
                )
            raise MonthBusyError(
                f"{label} is being scored by {holder.get('owner')} on "
                f"{holder.get('host')} since {holder.get('since')}: wait for it, or delete "
                f"{where} if that run is dead"
            )
        beat = threading.Thread(target=self._beat, name="month-lock", daemon=True)
        beat.start()
        try:
            yield self
        finally:
            self._stop.set()
            beat.join()
            self.release()

    def acquire(self) -> dict | None:
        """Take the lock; the holder's description when another live run has it.

        To take over generation k (stale, or a file that is no lock), a run creates k + 1 and
        then reads k again: unless k is still what it judged, byte for byte, the takeover is
        void (another run took over first, and a fresh run may have started since). So of any
        number of racers exactly one holds the lock, even one that paused mid-takeover.
        """
        for _ in range(TAKE_ATTEMPTS):
            generations = self._generations()
            top = max(generations, default=-1)
            judged = None
            if top >= 0:
                judged = storage.read_text(self.files.file(top))
                if judged is None:
                    continue  # released meanwhile: look again
                holder = self._parse(judged, top)
                if not self._is_gone(holder):
                    return holder
            mine = self.files.file(top + 1)
            if not writes.create_exclusive(mine, self._text()):
                continue  # another run took this generation first
            taken = top < 0 or storage.read_text(self.files.file(top)) == judged
            if not taken or max(self._generations()) != top + 1:
                storage.remove(mine)  # the lock moved on while this run looked: look again
                continue
            self.generation = top + 1
            for older in generations:
                storage.remove(self.files.file(older))
            return None
        top = max(self._generations(), default=-1)
        return self._read(top) or {"owner": "unknown"}

    def live_holder(self) -> dict | None:
        """The description of the live run that holds the lock now, None when none does."""
        top = max(self._generations(), default=-1)
        holder = self._read(top)
        return None if holder is None or self._is_gone(holder) else holder

    def check(self) -> None:
        """Raise MonthBusyError unless this run still holds the lock (call before publishing).

        A newer generation beside this run's own may be a void takeover about to be removed
        by its racer: it is looked at once more after a moment.
        """
        for pause in (0.0, 1.0):
            time.sleep(pause)
            holder = self._read(max(self._generations(), default=-1))
            if holder and holder.get("token") == self.content["token"]:
                break
            if self._read(self.generation) is None:
                break  # ours is gone: taken over for good
        if self._lost.is_set() or not holder or holder.get("token") != self.content["token"]:
            raise MonthBusyError(
                f"the lock of {uris.display_uri(self.files.folder)} was taken over by "
                f"{(holder or {}).get('owner', 'another run')} while this run scored: nothing "
                "was published (raise LOCK_STALE_SECONDS if runs pause that long)"
            )

    def release(self) -> None:
        """Give the lock back (only if it is still ours); never raises.

        When the storage is unreachable the lock stays behind, and the next run takes it over
        once this process is gone (same host) or the lock is stale.
        """
        if self.generation is None:
            return
        uri = self.files.file(self.generation)
        try:
            holder = self._read(self.generation)
            if holder and holder.get("token") == self.content["token"]:
                storage.remove(uri)
        except storage.storage_errors():
            logger.warning("could not release %s", uris.display_uri(uri), exc_info=True)

    def _beat(self) -> None:
        """Refresh the heartbeat until the run ends; note when the lock is no longer ours."""
        while not self._stop.wait(self.refresh_seconds):
            try:
                holder = self._read(self.generation)
                if not holder or holder.get("token") != self.content["token"]:
                    self._lost.set()
                    return
                self.content["heartbeat"] = time.time()
                writes.write_text(self.files.file(self.generation), self._text())
            except storage.storage_errors():
                logger.warning("could not refresh the month's lock", exc_info=True)

    def _text(self) -> str:
        return json.dumps(self.content)

    def _generations(self) -> list[int]:
        pattern = re.compile(rf"{re.escape(self.files.stem)}\.(\d+)\.json")
        names = storage.list_names(self.files.folder, f"{self.files.stem}.*.json")
        return [int(found.group(1)) for name in names if (found := pattern.fullmatch(name))]

    def _read(self, generation: int | None) -> dict | None:
        """A generation's lock as a dict (None when there is none)."""
        if generation is None or generation < 0:
            return None
        text = storage.read_text(self.files.file(generation))
        return None if text is None else self._parse(text, generation)

    def _parse(self, text: str, generation: int) -> dict:
        """A lock's content; {"unreadable_age": seconds} when it is no lock (the file's age)."""
        try:
            content = json.loads(text)
            if not isinstance(content, dict):
                raise ValueError("not an object")
            float(content.get("heartbeat", 0))
            return content
        except (ValueError, TypeError, RecursionError):
            written = storage.modified(self.files.file(generation)) or time.time()
            return {"unreadable_age": time.time() - written}

    def _is_gone(self, holder: dict) -> bool:
        if "unreadable_age" in holder:  # being written, or written by something else
            return holder["unreadable_age"] > self.stale_after_seconds
        if time.time() - float(holder.get("heartbeat", 0)) > self.stale_after_seconds:
            return True
        if holder.get("host") != socket.gethostname():
            return False  # another host: its heartbeat says
        ours, theirs = boot_id(), holder.get("boot_id")
        if ours is None or theirs is None:
            return False  # this host cannot tell its boots apart: the heartbeat says
        if theirs != ours:
            return True  # the host restarted since: every process of that boot is gone
        try:
            pid = int(holder.get("pid", 0))
        except (TypeError, ValueError):
            return False
        started = process_start(pid)
        return started is None or started != holder.get("pid_start")
