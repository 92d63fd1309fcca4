"""Moving predictions written in the layout before the current set into today's layout.

Before, each model version's set of a month sat in the month's folder as `{run id}.parquet`
with `_manifest-{run id}.json`, so readers of the root read every version at once. Migrating a
month keeps each verified set as a version under `_versions/` (its manifest now in its footer),
makes the most recently published one the month's current set, and removes the old files.
A file no manifest vouches for (a run died between the two) is kept under `_versions/` as
`{run id}.unverified.parquet`, out of every default read.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ride_duration.batch import manifest
from ride_duration.batch.locks import MonthLock
from ride_duration.batch.paths import CURRENT_FILE, VERSIONS_FOLDER, LockFiles, MonthOutput
from ride_duration.core import storage, uris, writes
from ride_duration.core.errors import MonthBusyError
from ride_duration.core.months import Month

OLD_MANIFEST_VERSION = 1
MONTH_FOLDER = re.compile(r"taxi_type=([a-z]+)/year=(\d{4})/month=(\d{2})")


@dataclass
class MigratedMonth:
    """What migrating one month did."""

    folder: str
    versions: list[str]
    current: str | None
    unverified: list[str]

    def describe(self) -> str:
        """One line: the month, its versions, the current one, files no manifest vouched for."""
        line = f"{uris.display_uri(self.folder)}: {len(self.versions)} version(s) kept"
        if self.current:
            line += f", current: {self.current}"
        if self.unverified:
            line += f"; kept without a manifest: {', '.join(self.unverified)}"
        return line


def migrate(
    root: str, say: Callable[[str], None], stale_after_seconds: float
) -> list[MigratedMonth]:
    """Migrate every month under `root` that still holds the old layout; say each one."""
    migrated = []
    for folder in storage.glob_below(root, "taxi_type=*/year=*/month=*"):
        found = MONTH_FOLDER.fullmatch(folder)
        if not found:
            continue
        taxi_type, year, month = found.group(1), int(found.group(2)), int(found.group(3))
        output = MonthOutput(root, taxi_type, Month(year, month))
        names = storage.list_names(output.folder, "*")
        if not [n for n in names if n.endswith(".parquet") and n != CURRENT_FILE]:
            continue
        done = _migrate_month(output, names, stale_after_seconds)
        say(done.describe())
        migrated.append(done)
    if not migrated:
        say(f"nothing to migrate under {uris.display_uri(root)}")
    return migrated


def _migrate_month(
    output: MonthOutput, names: list[str], stale_after_seconds: float
) -> MigratedMonth:
    """Migrate one month, holding its lock; MonthBusyError while an old run still scores it."""
    for name in names:
        if name.startswith("_lock-") and name.endswith(".json"):
            _refuse_if_live(output, name, stale_after_seconds)
    lock = MonthLock(output.lock, owner="migration", stale_after_seconds=stale_after_seconds)
    old_files = [n for n in names if n.endswith(".parquet") and n != CURRENT_FILE]
    versions = uris.join(output.root, VERSIONS_FOLDER, output.partition)
    with lock.held(f"{output.taxi_type} {output.month}"):
        published = []
        unverified = []
        for name in old_files:
            stem = name.removesuffix(".parquet")
            old = uris.join(output.folder, name)
            content = _verified(old, names, stem, output)
            if content is None:
                writes.publish_copy(old, uris.join(versions, f"{stem}.unverified.parquet"))
                unverified.append(name)
                continue
            table = storage.read_table(old).replace_schema_metadata(None)
            version = uris.join(versions, name)
            writer = writes.AtomicParquetWriter(version, table.schema)
            try:
                writer.write(table)
                writer.commit(manifest.footer(content))
            except BaseException:
                writer.discard()
                raise
            published.append((content.get("finished_at") or "", stem, version, content))
        current = None
        if published:
            _, current, version, content = max(published)
            writes.publish_copy(version, output.current)
            manifest.write(output, manifest.with_file(content, storage.file_info(output.current)))
        for name in names:  # only now: a migration stopped midway is simply run again
            if name in old_files or name.startswith(("_manifest-", "_lock-")):
                storage.remove(uris.join(output.folder, name))
    return MigratedMonth(output.folder, [p[1] for p in published], current, unverified)


def _verified(old: str, names: list[str], stem: str, output: MonthOutput) -> dict[str, Any] | None:
    """The old manifest of `old` converted to today's, when it exists and matches the file."""
    if f"_manifest-{stem}.json" not in names:
        return None
    try:
        content = json.loads(
            storage.read_text(uris.join(output.folder, f"_manifest-{stem}.json")) or ""
        )
    except (json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(content, dict) or content.get("manifest_version") != OLD_MANIFEST_VERSION:
        return None
    recorded = content.get("output") or {}
    info = storage.file_info(old)
    rows, _ = storage.parquet_footer(old)
    if recorded.get("bytes") != info["bytes"] or recorded.get("rows") != rows:
        return None
    if recorded.get("etag") is not None and recorded.get("etag") != info["etag"]:
        return None
    converted = copy.deepcopy(content)
    converted["manifest_version"] = manifest.MANIFEST_VERSION
    converted["output"] = {
        "uri": uris.display_uri(output.current),
        "version_uri": uris.display_uri(
            uris.join(output.root, VERSIONS_FOLDER, output.partition, f"{stem}.parquet")
        ),
        "rows": rows,
        "migrated_from": recorded.get("uri"),
    }
    return converted


def _refuse_if_live(output: MonthOutput, name: str, stale_after_seconds: float) -> None:
    """An old-layout lock (`_lock-{run id}.{generation}.json`) of a run still scoring the
    month stops its migration."""
    files = LockFiles(output.folder, name.rsplit(".", 2)[0])
    holder = MonthLock(files, "migration", stale_after_seconds).live_holder()
    if holder is not None:
        raise MonthBusyError(
            f"{output.taxi_type} {output.month} is being scored by {holder.get('owner')} with "
            "an earlier version: migrate once it has finished"
        )
