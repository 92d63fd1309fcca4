"""The manifest of a scored month: what was read, dropped, scored and written, by which model.

Each output file `{run id}.parquet` gets `_manifest-{run id}.json` beside it, written last
(`ride_duration.batch.paths`): a month counts as done for a model only when that manifest
exists and matches its file. Its fields are built here, next to the code that reads them.
"""

from __future__ import annotations

import functools
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from ride_duration.batch.paths import MonthOutput
from ride_duration.batch.result import MonthResult
from ride_duration.core import storage, uris, writes

MANIFEST_VERSION = 1


def build(
    result: MonthResult,
    *,
    input_info: dict,
    output_info: dict,
    flow_run_id: str | None,
    started_at: datetime,
    code_version: str | None,
) -> dict:
    """The manifest of a scored month, from its result and the files' sizes and versions."""
    model = result.model
    return {
        "manifest_version": MANIFEST_VERSION,
        "taxi_type": result.taxi_type,
        "month": str(result.month),
        "input": {"uri": result.input_uri, **input_info},
        "output": {"uri": result.output_uri, "rows": result.rows_scored, **output_info},
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
        "code_version": code_version or git_version(),
        "flow_run_id": flow_run_id,
        "started_at": started_at.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": result.seconds,
    }


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


def write(output_uri: str, content: dict) -> None:
    """Write the manifest of the output file `output_uri` (atomically), after the file itself."""
    writes.write_text(
        MonthOutput(output_uri).manifest, json.dumps(content, indent=2, sort_keys=True)
    )


def read(output_uri: str) -> dict | None:
    """The manifest of the output file `output_uri`, or None if it is missing or unreadable."""
    text = storage.read_text(MonthOutput(output_uri).manifest)
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
        expected.get("uri") == uris.display_uri(output_uri)
        and expected.get("bytes") == info["bytes"]
        and expected.get("rows") == rows
        and (expected.get("etag") is None or expected.get("etag") == info["etag"])
    )
