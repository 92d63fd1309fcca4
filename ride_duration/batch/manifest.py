"""The manifest of a scored month: what was read, dropped, scored and written, by which model.

A month's manifest travels inside its data file, as key-value metadata in the parquet footer
(`ride_duration.manifest`), so that the one atomic step that publishes a set publishes its
manifest with it: a file never stands under another file's manifest. `_manifest.json` beside
the current set is a readable copy, written right after it with the file's size and version
tag; where that copy does not match the file (a run died between the two), the footer says.
"""

from __future__ import annotations

import copy
import functools
import json
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ride_duration.batch.paths import MonthOutput
from ride_duration.batch.result import MonthResult
from ride_duration.core import storage, uris, writes
from ride_duration.monitoring.drift import FIGURES
from ride_duration.monitoring.profile import PROFILE_FILE

MANIFEST_VERSION = 2
FOOTER_KEY = b"ride_duration.manifest"


def build(
    result: MonthResult,
    *,
    input_info: Mapping[str, object],
    version_uri: str,
    flow_run_id: str | None,
    started_at: datetime,
    code_version: str | None,
) -> dict[str, Any]:
    """The manifest of a scored month, from its result and its input's size and version."""
    model = result.model
    return {
        "manifest_version": MANIFEST_VERSION,
        "taxi_type": result.taxi_type,
        "month": str(result.month),
        "input": {"uri": result.input_uri, **input_info},
        "output": {
            "uri": result.output_uri,
            "version_uri": uris.display_uri(version_uri),
            "rows": result.rows_scored,
        },
        "rows_read": result.rows_read,
        "rows_dropped": result.rows_dropped,
        "rows_scored": result.rows_scored,
        "model": {
            "uri": uris.display_uri(model.uri),
            "resolved_uri": uris.display_uri(model.resolved_uri),
            "name": model.name,
            "version": model.version,
            "run_id": model.run_id,
            "label": model.label,
            "scoring": result.scoring_path,
        },
        "metrics": result.metrics,
        "drift": drift_section(result),
        "code_version": code_version or git_version(),
        "flow_run_id": flow_run_id,
        "started_at": started_at.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": result.seconds,
    }


def drift_section(result: MonthResult) -> dict[str, Any]:
    """The month's drift from its model's reference profile, per column (docs/monitoring.md);
    `reference` is null when the model has no profile, and there are no figures."""
    if result.reference is None:
        return {"reference": None, "columns": {}}
    columns: dict[str, Any] = {}
    for column in result.drift:
        figures: dict[str, Any] = {figure: column.figure(figure) for figure in FIGURES}
        month = result.profile.histograms[column.column] if result.profile else None
        if month is not None and month.edges is None:
            figures["unknown_share"] = month.unknown_share
            figures["reference_unknown_share"] = result.reference.histograms[
                column.column
            ].unknown_share
        columns[column.column] = figures
    return {"reference": PROFILE_FILE, "columns": columns}


@functools.cache
def git_version() -> str:
    """The code's git commit ("git:0123abcd4567"), else "unknown" (images set CODE_VERSION)."""
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


def footer(content: dict[str, Any]) -> dict[bytes, bytes]:
    """The manifest as the key-value metadata of its data file's parquet footer."""
    return {FOOTER_KEY: json.dumps(content, sort_keys=True).encode()}


def with_file(content: dict[str, Any], info: storage.FileInfo) -> dict[str, Any]:
    """The manifest with the size and version tag (`storage.file_info`) of the file it is in."""
    described = copy.deepcopy(content)
    described["output"] = {**described.get("output", {}), **info}
    return described


def write(output: MonthOutput, content: dict[str, Any]) -> None:
    """Write the readable copy of the current set's manifest (atomically), after the set."""
    writes.write_text(output.manifest, json.dumps(content, indent=2, sort_keys=True))


def current(output: MonthOutput) -> dict[str, Any] | None:
    """The manifest of the month's current set, None when it has none.

    From `_manifest.json` when it describes the file there now (size and version tag), else
    from the file's own footer; a file without one (not written by this product) has none.
    """
    try:
        info = storage.file_info(output.current)
    except FileNotFoundError:
        return None
    try:
        copied = parse(storage.read_text(output.manifest))
    except UnicodeDecodeError:  # not text: no copy of ours
        copied = None
    if copied is not None and _describes(copied, info):
        return copied
    content = from_footer(output.current)
    return None if content is None else with_file(content, info)


def from_footer(uri: str) -> dict[str, Any] | None:
    """The manifest a data file carries in its footer, None when it carries none."""
    try:
        _, metadata = storage.parquet_footer(uri)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):  # not a parquet file: no manifest of ours
        return None
    return parse(metadata.get(FOOTER_KEY, b"").decode("utf-8", "replace") or None)


def parse(text: str | None) -> dict[str, Any] | None:
    """A manifest from its JSON text, None when it is missing, no object or of another version."""
    if text is None:
        return None
    try:
        content = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(content, dict) or content.get("manifest_version") != MANIFEST_VERSION:
        return None
    return content


def _describes(content: dict[str, Any], info: storage.FileInfo) -> bool:
    described = content.get("output")
    if not isinstance(described, dict):
        return False
    return all(described.get(key) == info[key] for key in ("bytes", "etag", "modified"))
