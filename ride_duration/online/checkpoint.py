"""The stream consumer's checkpoint (the last sequence number done per shard) and dead letter.

One consumer at a time reads with a checkpoint. The dead-letter file keeps, one JSON line each,
the records still failed once their retries are spent, synced before the checkpoint moves past
them.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, TextIO

from ride_duration.core.errors import ScoringError

logger = logging.getLogger(__name__)


class CheckpointBusyError(ScoringError):
    """Another consumer is reading with the same checkpoint."""


def _synced_write(path: Path, text: str) -> None:
    """Replace `path` with `text`: written beside it, synced, renamed into place, and the folder
    synced, so that a crash leaves the old content or the new, whole."""
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with staging.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    staging.replace(path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


class Checkpoint:
    """Per shard, the last sequence number done, and which shards are read to their end.

    A small JSON file, held by one consumer at a time (`CheckpointBusyError` for a second), and
    rewritten atomically. A file that does not read as a checkpoint is kept aside, said so in
    one line, and every shard starts again from the consumer's start position (at least once).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[str, str] = {}
        self.finished: set[str] = set()
        self._lock: TextIO | None = None

    def __enter__(self) -> Checkpoint:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.with_name(self.path.name + ".lock").open("a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            lock.close()
            raise CheckpointBusyError(
                f"another consumer (pid {holder}) reads with the checkpoint {self.path}: stop "
                "it, or give this one a STREAM_CHECKPOINT of its own"
            ) from None
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        self._lock = lock
        self._load()
        return self

    def __exit__(self, *_: object) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the file releases the lock
            self._lock = None

    def _load(self) -> None:
        if not self.path.exists():
            return
        try:
            content = json.loads(self.path.read_text(encoding="utf-8"))
            if isinstance(content, dict) and "shards" not in content:
                content = {"shards": content, "finished": []}  # an earlier consumer's file
            shards, finished = content["shards"], content["finished"]
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in shards.items()):
                raise ValueError("a shard's sequence number is not text")
            if not all(isinstance(shard, str) for shard in finished):
                raise ValueError("a finished shard is not named by text")
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
            kept = self.path.with_name(f"{self.path.name}.unreadable-{int(time.time())}")
            self.path.replace(kept)
            logger.warning(
                "the checkpoint %s does not read (%s): kept as %s; every shard starts again "
                "from the start position",
                self.path,
                type(error).__name__,
                kept.name,
            )
            return
        self.done, self.finished = dict(shards), set(finished)

    def advance(self, shard_id: str, sequence_number: str) -> None:
        """Record that `shard_id` is done up to `sequence_number`."""
        self.done[shard_id] = sequence_number
        self._save()

    def finish(self, shard_id: str) -> None:
        """Record that `shard_id` is closed and read to its end."""
        self.finished.add(shard_id)
        self._save()

    def _save(self) -> None:
        content = {"shards": self.done, "finished": sorted(self.finished)}
        _synced_write(self.path, json.dumps(content, indent=2, sort_keys=True))


def keep_aside(path: Path, shard_id: str, records: list[dict[str, Any]], reason: str) -> None:
    """Append `records` of `shard_id` (as GetRecords answered them) to the dead-letter file
    `path`, one JSON line each with its data and `reason`, synced before this returns."""
    with path.open("a", encoding="utf-8") as out:
        for record in records:
            line = {
                "shard_id": shard_id,
                "sequence_number": record["SequenceNumber"],
                "partition_key": record["PartitionKey"],
                "data": base64.b64encode(record["Data"]).decode(),
                "reason": reason,
            }
            out.write(json.dumps(line) + "\n")
        out.flush()
        with contextlib.suppress(OSError):  # kept for sure before the checkpoint moves on
            os.fsync(out.fileno())
    logger.warning("%d records of %s kept in %s", len(records), shard_id, path)
