"""The MLflow model registry, read without importing MLflow, for the setups it covers.

Importing MLflow costs about 1.5 s and its sqlite store 1 to 2 s more (SQLAlchemy, Alembic),
while a command needs three facts of a registered model: which version an alias or "latest"
names, which run logged it, and where its files are. This module reads them from:

- an http(s) tracking server, through MLflow's public REST API (`model.rest`);
- a `sqlite:///` store, from its registry tables, read-only.

It reads, the same ways, the artifact locations the store's experiments record: the default
trust of `model.resolve`.

Whatever it cannot settle exactly (another store, a name it cannot find, a server that does
not answer, an unexpected answer) comes back as None, and `ride_duration.model.resolve` asks MLflow
itself, which answers with MLflow's own errors: this module only ever saves time. Where MLflow
is not installed (the serving install), a server that does not answer is said so here.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import urllib.error
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ride_duration.model import rest
from ride_duration.model.artifacts import server_unreachable

logger = logging.getLogger(__name__)

SQLITE_TIMEOUT_SECONDS = 10  # waiting for a store another process writes
_MAX_PAGES = 100  # of a server's experiments, 1,000 a page
# Model versions MLflow keeps for itself while deleting them (registry's DELETED_INTERNAL).
DELETED_STAGE = "Deleted_Internal"


@dataclass(frozen=True)
class Version:
    """A registered model version: its name and number, its run, and where its files are."""

    name: str
    version: str
    run_id: str | None
    location: str  # the artifact location MLflow's get_model_version_download_uri gives


def covers(tracking_uri: str) -> bool:
    """Whether this module reads the registry of `tracking_uri` (an http(s) or sqlite store)."""
    return tracking_uri.startswith(("http://", "https://", "sqlite:///"))


def lookup(tracking_uri: str, name: str, selector: str) -> Version | None:
    """The version of `name` that `selector` names ("@alias", a number, or "latest").

    None when this module cannot tell exactly: ask MLflow then.
    """
    try:
        if tracking_uri.startswith(("http://", "https://")):
            return _Rest(tracking_uri.rstrip("/")).lookup(name, selector)
        if tracking_uri.startswith("sqlite:///"):
            return _Sqlite(_sqlite_path(tracking_uri)).lookup(name, selector)
    except (OSError, ValueError, KeyError, sqlite3.Error) as error:
        # A server that does not answer (URLError, ConnectionError and TimeoutError are
        # OSErrors) was asked again already (rest._open): MLflow would only ask it again.
        if isinstance(error, urllib.error.URLError) and not isinstance(
            error, urllib.error.HTTPError
        ):
            raise server_unreachable(tracking_uri, error.reason) from None
        if isinstance(error, (ConnectionError, TimeoutError)):
            raise server_unreachable(tracking_uri, error) from None
        logger.debug("registry lookup of %s %s left to MLflow: %s", name, selector, error)
    return None


def artifact_locations(tracking_uri: str) -> tuple[str, ...] | None:
    """The artifact locations the experiments of the store at `tracking_uri` record, deleted
    ones too (their registered versions stay): from a sqlite store's `experiments` table, read
    read-only, or a tracking server's `experiments/search`. None when it cannot tell (another
    store, a missing file, a server that does not answer, an unexpected answer)."""
    try:
        if tracking_uri.startswith(("http://", "https://")):
            return _Rest(tracking_uri.rstrip("/")).artifact_locations()
        if tracking_uri.startswith("sqlite:///"):
            return _Sqlite(_sqlite_path(tracking_uri)).artifact_locations()
    except (OSError, ValueError, KeyError, TypeError, sqlite3.Error) as error:
        logger.debug("artifact locations of %s not read: %s", tracking_uri, error)
    return None


class _Rest:
    """MLflow's REST API (api/2.0/mlflow), as MlflowClient calls it."""

    def __init__(self, base: str) -> None:
        self.base = base

    def lookup(self, name: str, selector: str) -> Version | None:
        if selector.startswith("@"):
            found = self._get("registered-models/alias", name=name, alias=selector[1:])
        elif selector.isdigit():
            found = self._get("model-versions/get", name=name, version=selector)
        else:
            found = self._latest(name)
        if found is None:
            return None
        version = found["model_version"]
        download = self._get(
            "model-versions/get-download-uri", name=name, version=version["version"]
        )
        if download is None:
            return None
        return Version(
            version["name"],
            str(version["version"]),
            version.get("run_id"),
            download["artifact_uri"],
        )

    def artifact_locations(self) -> tuple[str, ...] | None:
        locations: list[str] = []
        token = ""
        for _ in range(_MAX_PAGES):
            query = {"max_results": "1000", "view_type": "ALL"}
            if token:
                query["page_token"] = token
            found = self._get("experiments/search", **query)
            if found is None:
                return None
            for experiment in found.get("experiments") or []:
                if isinstance(experiment.get("artifact_location"), str):
                    locations.append(experiment["artifact_location"])
            token = found.get("next_page_token") or ""
            if not token:
                return tuple(dict.fromkeys(locations))
        return None  # more experiments than this reads: not all are known

    def _latest(self, name: str) -> dict[str, Any] | None:
        found = self._get("model-versions/search", filter=f"name='{name}'", max_results="10000")
        versions = (found or {}).get("model_versions") or []
        if not versions or (found or {}).get("next_page_token"):
            return None
        return {"model_version": max(versions, key=lambda v: int(v["version"]))}

    def _get(self, path: str, **query: str) -> dict[str, Any] | None:
        answer = rest.open_url(f"{self.base}/api/2.0/mlflow/{path}?{urllib.parse.urlencode(query)}")
        if answer is None:
            return None
        with answer:
            found: dict[str, Any] = json.load(answer)
            return found


class _Sqlite:
    """The registry tables of an MLflow sqlite store, opened read-only."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise FileNotFoundError(path)
        self.uri = f"file:{path}?mode=ro"

    def artifact_locations(self) -> tuple[str, ...]:
        with sqlite3.connect(self.uri, uri=True, timeout=SQLITE_TIMEOUT_SECONDS) as db:
            rows = db.execute("SELECT artifact_location FROM experiments").fetchall()
        return tuple(dict.fromkeys(row[0] for row in rows if isinstance(row[0], str) and row[0]))

    def lookup(self, name: str, selector: str) -> Version | None:
        with sqlite3.connect(self.uri, uri=True, timeout=SQLITE_TIMEOUT_SECONDS) as db:
            if selector.startswith("@"):
                rows = db.execute(
                    "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?",
                    (name, selector[1:]),
                ).fetchall()
            elif selector.isdigit():
                rows = [(int(selector),)]
            else:
                rows = db.execute(
                    "SELECT MAX(version) FROM model_versions WHERE name = ? AND current_stage != ?",
                    (name, DELETED_STAGE),
                ).fetchall()
            if len(rows) != 1 or rows[0][0] is None:
                return None  # unknown, or the same name in several workspaces
            versions = db.execute(
                "SELECT name, version, run_id, source, storage_location FROM model_versions "
                "WHERE name = ? AND version = ? AND current_stage != ?",
                (name, rows[0][0], DELETED_STAGE),
            ).fetchall()
        if len(versions) != 1:
            return None
        found_name, version, run_id, source, storage_location = versions[0]
        # MLflow 3 registers a logged model by its models:/ id; the files are then at its
        # storage location, which get_model_version_download_uri gives first.
        location = storage_location or source
        if not location or location.startswith(("models:/", "runs:/")):
            return None
        return Version(found_name, str(version), run_id, location)


def _sqlite_path(tracking_uri: str) -> Path:
    """The file of a sqlite:/// URI: relative after three slashes, absolute after four."""
    return Path(tracking_uri.removeprefix("sqlite:///"))
