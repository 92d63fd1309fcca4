"""The per-month lock: one run at a time scores a month.

A lock is a small file beside the month's output, one file per generation:
`_lock.{generation}.json`. The newest generation is the lock; a run takes it by creating the
next one, whole, with an atomic exclusive create (`writes.create_exclusive`): of any number of
runs racing for a free or stale lock exactly one succeeds, and a run killed meanwhile leaves no
empty lock. The holder rewrites its file while it scores (a heartbeat) and deletes it at the end.

A holder is gone when its heartbeat is stale, its host restarted since, or its process is gone,
which only a run on the same host, boot and pid namespace can tell. A file that is no lock counts
until it is stale; a live lock of an earlier version keeps a run out too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from ride_duration.batch.paths import LockFiles
from ride_duration.core import storage, uris, writes
from ride_duration.core.errors import MonthBusyError

logger = logging.getLogger(__name__)

TAKE_ATTEMPTS = 5
# How far ahead of this clock another host's may run before its heartbeat is not believed.
CLOCK_SKEW_SECONDS = 60.0
# The most of a lock's text (owner, host, time) a message shows.
SHOWN_CHARS = 200
Holder = dict[str, Any]  # a lock file's content as read: anything may be in it


def boot_id() -> str | None:
    """This host's boot, where the system tells it (Linux): a pid means nothing across boots."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read().strip() or None
    except (OSError, ValueError):
        return None


def pid_namespace() -> str | None:
    """This process's pid namespace (Linux: "pid:[4026531836]"): a pid means nothing outside."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def process_start(pid: int) -> str | None:
    """When process `pid` started (Linux clock ticks since boot); None when none, or untold."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            stat = handle.read()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]  # field 22, after the command's parentheses


def shown(value: object) -> str:
    """A value read from a lock as a message shows it: one line, at most SHOWN_CHARS long."""
    text = str(value)  # anything can be in a lock file: line breaks, escapes, lone surrogates
    line = "".join(char if char.isprintable() else "?" for char in text[:SHOWN_CHARS])
    return line + ("..." if len(text) > SHOWN_CHARS else "")


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
            "pid_ns": pid_namespace(),
            "pid": os.getpid(),
            "pid_start": process_start(os.getpid()),
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
            "heartbeat": time.time(),
        }
        self._stop = threading.Event()
        self._lost = threading.Event()

    @contextlib.contextmanager
    def held(self, label: str) -> Iterator[MonthLock]:
        """Hold the lock for the block, its heartbeat running; MonthBusyError when it is held."""
        with writes.writing(self.files.prefix):
            holder = self.acquire()
        if holder is not None:
            raise MonthBusyError(self._busy(label, holder))
        beat = threading.Thread(target=self._beat, name="month-lock", daemon=True)
        beat.start()
        try:
            yield self
        finally:
            self._stop.set()
            beat.join()
            self.release()

    def _busy(self, label: str, holder: Holder) -> str:
        """The one line that says who keeps `label` busy."""
        old = holder.get("earlier_version")
        where = uris.display_uri(
            uris.join(self.files.folder, old) if old else self.files.prefix + ".*.json"
        )
        if "unreadable_age" in holder:
            return (
                f"{label} is locked by {where}, which does not read as a lock (written "
                f"{holder['unreadable_age']:.0f} s ago): it is taken over after "
                "LOCK_STALE_SECONDS; delete it if no run is scoring this month"
            )
        when = f"since {shown(holder.get('since'))}"
        if old:
            when = f"with an earlier version of this project (its lock {where})"
        who = f"{shown(holder.get('owner'))} on {shown(holder.get('host'))} {when}"
        return (
            f"{label} is being scored by {who}: wait for it, or delete {where} if that run is dead"
        )

    def acquire(self) -> Holder | None:
        """Take the lock; the holder's description when another live run has it.

        To take over generation k (stale, or a file that is no lock), a run creates k + 1 and
        then reads k again: unless k is still what it judged, byte for byte, the takeover is
        void (another run took over first, and a fresh run may have started since). So of any
        number of racers exactly one holds the lock, even one that paused mid-takeover. The
        winner then looks for a live lock of an earlier version, and gives way to it.
        """
        for _ in range(TAKE_ATTEMPTS):
            generations = self._generations()
            top = max(generations, default=-1)
            judged = None
            if top >= 0:
                judged = _read_text(self.files.file(top))
                if judged is None:
                    continue  # released meanwhile: look again
                holder = self._parse(judged, self.files.file(top))
                if not self._is_gone(holder, self.files.file(top)):
                    return holder
            mine = self.files.file(top + 1)
            if not writes.create_exclusive(mine, json.dumps(self.content)):
                continue  # another run took this generation first
            taken = top < 0 or _read_text(self.files.file(top)) == judged
            if not taken or max(self._generations()) != top + 1:
                storage.remove(mine)  # the lock moved on while this run looked: look again
                continue
            self.generation = top + 1
            for older in generations:
                storage.remove(self.files.file(older))
            if (earlier := self._earlier_version_holder(clean=True)) is not None:
                storage.remove(mine)  # an earlier version's run holds the month: give way
                self.generation = None
            return earlier
        top = max(self._generations(), default=-1)
        return self._read(top) or {"owner": "unknown"}

    def live_holder(self) -> Holder | None:
        """The description of the live run that holds the lock now, None when none does."""
        names = self._names()
        top = max(self._generations(names), default=-1)
        holder = self._read(top)
        if holder is None or self._is_gone(holder, self.files.file(top)):
            return self._earlier_version_holder(clean=False, names=names)
        return holder

    def check(self) -> None:
        """Raise MonthBusyError unless this run still holds the lock (call before publishing);
        a newer generation beside its own may be a void takeover about to be removed by its
        racer, so it looks once more after a moment."""
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
                f"{shown((holder or {}).get('owner', 'another run'))} while this run scored: "
                "nothing was published (raise LOCK_STALE_SECONDS if runs pause that long)"
            )

    def release(self) -> None:
        """Give the lock back if it is still ours; never raises (with the storage unreachable it
        stays behind, for the next run to take over once this process is gone or it is stale)."""
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
                assert self.generation is not None  # its file was just read
                self.content["heartbeat"] = time.time()
                writes.write_text(self.files.file(self.generation), json.dumps(self.content))
            except storage.storage_errors():
                logger.warning("could not refresh the month's lock", exc_info=True)

    def _names(self) -> list[str]:
        return storage.list_names(self.files.folder, self.files.pattern)

    def _generations(self, names: list[str] | None = None) -> list[int]:
        found = map(self.files.generation, self._names() if names is None else names)
        return [generation for generation in found if generation is not None]

    def _earlier_version_holder(self, clean: bool, names: list[str] | None = None) -> Holder | None:
        """The live run holding an earlier version's lock of the month, if any (a stale one is
        left to the migration); with `clean` (lock held), removes what killed creations left."""
        for name in self._names() if names is None else names:
            uri = uris.join(self.files.folder, name)
            if clean and name.endswith(writes.CREATING_SUFFIX):
                storage.remove(uri)
            if not self.files.is_earlier_version(name) or (text := _read_text(uri)) is None:
                continue
            holder = self._parse(text, uri)
            # The first versions wrote when their run started, and never refreshed it.
            holder.setdefault("heartbeat", holder.get("since_epoch", 0))
            if not self._is_gone(holder, uri):
                return {**holder, "earlier_version": name}
        return None

    def _read(self, generation: int | None) -> Holder | None:
        """A generation's lock as a dict (None when there is none)."""
        uri = None if generation is None or generation < 0 else self.files.file(generation)
        text = None if uri is None else _read_text(uri)
        return None if text is None or uri is None else self._parse(text, uri)

    def _parse(self, text: str, uri: str) -> Holder:
        """A lock's content; {"unreadable_age": seconds} when it is no lock (the file's age)."""
        try:
            content = json.loads(text)
        except (ValueError, RecursionError):
            content = None
        return content if isinstance(content, dict) else {"unreadable_age": _file_age(uri)}

    def _is_gone(self, holder: Holder, uri: str) -> bool:
        if "unreadable_age" in holder:  # written by something else, or damaged
            return bool(holder["unreadable_age"] > self.stale_after_seconds)
        try:
            beat = float(holder.get("heartbeat", 0))
        except (TypeError, ValueError, OverflowError):
            beat = math.nan
        if not math.isfinite(beat) or beat > time.time() + CLOCK_SKEW_SECONDS:
            beat = time.time() - _file_age(uri)  # no number, or in the future: the file says
        if time.time() - beat > self.stale_after_seconds:
            return True
        if holder.get("host") != socket.gethostname():
            return False  # another host: its heartbeat says
        ours, theirs = boot_id(), holder.get("boot_id")
        if ours is None or theirs is None:
            return False  # this host cannot tell its boots apart: the heartbeat says
        if theirs != ours:
            return True  # the host restarted since: every process of that boot is gone
        namespace = pid_namespace()
        if namespace is None or holder.get("pid_ns") != namespace:
            return False  # its pid may name another process here: the heartbeat says
        pid = holder.get("pid")
        if type(pid) is not int or pid <= 0:
            return False  # no pid to look at (text, infinity, a list...): the heartbeat says
        started = process_start(pid)
        return started is None or started != holder.get("pid_start")


def _file_age(uri: str) -> float:
    """Seconds since a lock file was last written, by the store's clock."""
    return time.time() - (storage.modified(uri) or time.time())


def _read_text(uri: str) -> str | None:
    """A lock file's text, None when it is not there; bytes that are not UTF-8 are kept (as
    surrogates), so that two reads compare equal exactly when the bytes are the same."""
    try:
        return storage.read_text(uri)
    except UnicodeDecodeError as error:
        return error.object.decode("utf-8", errors="surrogateescape")
