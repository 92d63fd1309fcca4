"""A sqlite file with the registry tables an MLflow store has, as far as `model.registry` reads
them: model versions and aliases, for tests that need a registry without MLflow."""

from __future__ import annotations

import sqlite3
from pathlib import Path

# name, version, run_id, source, storage_location, current_stage
VersionRow = tuple[str, int, str, str, str | None, str]


def sqlite_registry(
    path: Path, versions: list[VersionRow], aliases: list[tuple[str, str, int]]
) -> str:
    """Write the store at `path`; its tracking URI."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE registered_model_aliases (name TEXT, alias TEXT, version INT)")
        db.execute(
            "CREATE TABLE model_versions (name TEXT, version INT, run_id TEXT, source TEXT, "
            "storage_location TEXT, current_stage TEXT)"
        )
        db.executemany("INSERT INTO model_versions VALUES (?, ?, ?, ?, ?, ?)", versions)
        db.executemany("INSERT INTO registered_model_aliases VALUES (?, ?, ?)", aliases)
    return f"sqlite:///{path}"
