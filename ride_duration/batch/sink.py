"""Where a month's predictions go: the one interface the scoring loop writes through.

A sink is claimed (one run at a time per month), takes the month's rows as they are scored,
publishes them with their manifest in one step that readers see as a switch from the previous
set to the new one, and says what the current set is. `ParquetFolder` is the sink of plain
parquet files under a root (`batch.paths`); a table format (Delta Lake, Iceberg) would be a
second implementation, and the scoring loop (`batch.month`) would not change.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa

from ride_duration.batch import history, manifest
from ride_duration.batch.locks import MonthLock
from ride_duration.batch.output import OUTPUT_SCHEMA
from ride_duration.batch.paths import CURRENT_FILE, VERSIONS_FOLDER, MonthOutput
from ride_duration.core import storage, uris, writes
from ride_duration.core.errors import ConfigurationError
from ride_duration.model.resolve import ModelRef

logger = logging.getLogger(__name__)


class Claim(Protocol):
    """A run's exclusive hold on a month while it scores it."""

    def check(self) -> None:
        """Raise MonthBusyError unless the hold is still this run's (called before publishing)."""


class StagedSet(Protocol):
    """A month's rows as they are scored, invisible to readers until published."""

    uri: str  # where the set is kept once published: its version's own location
    rows_written: int

    def write(self, table: pa.Table) -> None:
        """Append scored rows."""

    def discard(self) -> None:
        """Drop everything written; never raises."""


class MonthSink(Protocol):
    """One taxi type's month: claim it, stage its rows, publish them, read its current set."""

    @property
    def current_uri(self) -> str:
        """Where readers find the month's current set."""

    @property
    def manifest_uri(self) -> str:
        """Where the current set's manifest can be read."""

    def claim(self, owner: str, label: str) -> AbstractContextManager[Claim]:
        """Hold the month for the block; MonthBusyError when another live run holds it."""

    def stage(self, model: ModelRef) -> StagedSet:
        """A new set of `model`'s predictions for this month, staged."""

    def publish(self, staged: StagedSet, content: dict[str, Any]) -> None:
        """Make `staged`, with its manifest `content`, the month's current set, atomically."""

    def current(self) -> dict[str, Any] | None:
        """The manifest of the month's current set, None when there is none."""

    def record(self, row: pa.Table) -> None:
        """Write the month's row of the monitoring table (`batch.history`), published or not."""


@dataclass(frozen=True)
class ParquetFolder:
    """A month as parquet files in a hive-style folder: one current set, each version kept.

    Publishing writes the version's file under `_versions/` (renamed into place, or one
    upload), then switches the current set to a copy of it (a hard link renamed over it, or
    one server-side copy), then copies its manifest beside it: a run killed anywhere leaves
    the previous set or the new one, each with its manifest in its footer.
    """

    output: MonthOutput
    stale_after_seconds: float

    @property
    def current_uri(self) -> str:
        return self.output.current

    @property
    def manifest_uri(self) -> str:
        return self.output.manifest

    @contextmanager
    def claim(self, owner: str, label: str) -> Iterator[Claim]:
        lock = MonthLock(
            self.output.lock, owner=owner, stale_after_seconds=self.stale_after_seconds
        )
        with lock.held(label):
            self._refuse_old_layout()
            self._remove_unfinished(lock)
            yield lock

    def stage(self, model: ModelRef) -> writes.AtomicParquetWriter:
        return writes.AtomicParquetWriter(self.output.version(model), OUTPUT_SCHEMA)

    def publish(self, staged: StagedSet, content: dict[str, Any]) -> None:
        if not isinstance(staged, writes.AtomicParquetWriter):
            raise TypeError(f"a ParquetFolder publishes what it staged, not {type(staged)}")
        current = self.output.current
        try:
            staged.commit(manifest.footer(content))
        except BaseException:
            staged.discard()
            raise
        with writes.writing(current):
            writes.publish_copy(staged.uri, current)
        try:
            manifest.write(self.output, manifest.with_file(content, storage.file_info(current)))
        except storage.storage_errors():
            # The set is published, its manifest in its footer: the readable copy is a
            # convenience, and a copy that does not describe the file is ignored by readers.
            logger.warning(
                "published %s, but could not write %s (the file's footer holds its manifest)",
                uris.display_uri(current),
                uris.display_uri(self.output.manifest),
                exc_info=True,
            )

    def current(self) -> dict[str, Any] | None:
        return manifest.current(self.output)

    def record(self, row: pa.Table) -> None:
        try:
            writes.write_bytes(self.output.monitoring, history.to_bytes(row))
        except storage.storage_errors():
            # Its figures are in the run's result and (when published) the manifest too.
            logger.warning(
                "could not write %s", uris.display_uri(self.output.monitoring), exc_info=True
            )

    def _remove_unfinished(self, lock: MonthLock) -> None:
        """Remove what runs of this month killed before it left unfinished, whatever model they
        used: temporary files beside the current set and its versions, unfinished uploads.

        Only what was started before this run took the lock (the lock file's time, on the
        store's own clock) is removed: anything newer is this run's.
        """
        taken = storage.modified(lock.files.file(lock.generation or 0))
        if taken is None:
            return
        versions = uris.join(self.output.root, VERSIONS_FOLDER, self.output.partition)
        for folder in (self.output.folder, versions):
            for removed in writes.remove_unfinished(folder, taken):
                logger.info("removed %s, left by a run that did not finish", removed)

    def _refuse_old_layout(self) -> None:
        """Predictions in the layout before the current set (one file per model version in the
        month's folder) would be read beside the new set: they are moved first."""
        names = storage.list_names(self.output.folder, "*.parquet")
        old = [name for name in names if name != CURRENT_FILE]
        if old:
            root = uris.display_uri(self.output.root)
            raise ConfigurationError(
                f"{uris.display_uri(posixpath.join(self.output.folder, old[0]))} is in the "
                f"output layout of earlier versions, which readers would count beside the new "
                f"set: run `python -m ride_duration.migrate {root}` once, then score again"
            )
