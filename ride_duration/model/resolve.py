"""Finding and loading the model: MLflow URIs are resolved once to a fixed version, then loaded.

Accepted URIs: `models:/NAME@ALIAS`, `models:/NAME/VERSION`, `models:/NAME/latest`,
`models:/<logged model id>`, `runs:/RUN_ID/PATH`, and a direct artifact location (a local
folder or `s3://...`) that needs no tracking server. An alias is resolved to its current
version here, and everything downstream uses that version, even if the alias moves meanwhile.

MLflow itself is imported only when needed: registered versions are looked up through
`ride_duration.model.registry` when it can (an http(s) server or a sqlite store), model files on
local disk or S3 are read where they are, and a scikit-learn model saved with (cloud)pickle is
unpickled directly; anything else goes through MLflow as before.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ride_duration.core import uris
from ride_duration.core.errors import (
    ModelNotFoundError,
    ModelNotTrustedError,
)
from ride_duration.core.uris import display_uri
from ride_duration.model.artifacts import (
    ModelFiles,
    as_scoring_error,
    mlflow_installed,
    require_mlflow,
    run_id_of,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import LoggedModel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelRef:
    """A model pinned to one immutable artifact, with what MLflow knows about it."""

    uri: str
    resolved_uri: str
    name: str | None = None
    version: str | None = None
    run_id: str | None = None
    location: str | None = None  # where its files are, when the lookup told

    @property
    def label(self) -> str:
        """What the output's `model_version` column records: "NAME/VERSION", else the run id."""
        if self.name and self.version:
            return f"{self.name}/{self.version}"
        return self.run_id or display_uri(self.resolved_uri)


# Names of the tracking store's own: its registry and its runs.
STORE_NAMES = ("models:/", "runs:/")
# What a tracking server serves itself (`mlflow server` without --no-serve-artifacts).
SERVED = "mlflow-artifacts:/"
_SHOWN_PREFIXES = 6  # a refusal lists this many trusted locations, then counts the rest


def check_trusted(uri: str, trusted_prefixes: tuple[str, ...], files_of: str | None = None) -> None:
    """Refuse a model location outside `trusted_prefixes`: loading a pickle runs its code.

    Matched by whole path segments and buckets (`uris.is_under`); `files_of` names the model
    URI whose files `uri` holds, for the message.
    """
    if not uris.is_trusted(uri, trusted_prefixes):
        what = f"model {display_uri(uri)}"
        if files_of:
            what = f"model {display_uri(files_of)} has its files at {display_uri(uri)}, which"
        shown = [display_uri(prefix) for prefix in trusted_prefixes[:_SHOWN_PREFIXES]]
        if len(trusted_prefixes) > _SHOWN_PREFIXES:
            shown.append(f"and {len(trusted_prefixes) - _SHOWN_PREFIXES} more")
        raise ModelNotTrustedError(
            f"{what} is not in a trusted location "
            f"({', '.join(shown) or 'none'}): loading a model runs its code, so add "
            "its prefix to TRUSTED_MODEL_PREFIXES only if you trust whoever can write there"
        )


def store_names(tracking_uri: str) -> tuple[str, ...]:
    """What the tracking store at `tracking_uri` names models by, and what a server serves."""
    if tracking_uri.startswith(("http://", "https://")):
        return (*STORE_NAMES, SERVED)
    return STORE_NAMES


def store_locations(tracking_uri: str) -> tuple[str, ...]:
    """Where the tracking store at `tracking_uri` keeps model files: the artifact locations
    its experiments record (a sqlite store read read-only, a server through its REST API), or
    a file store's own folder; none when it cannot tell (a server that does not answer)."""
    from ride_duration.model import registry  # its HTTP client and sqlite, only when needed

    if registry.covers(tracking_uri):
        return registry.artifact_locations(tracking_uri) or ()
    if tracking_uri.startswith("file:") or os.path.isdir(tracking_uri):
        return (tracking_uri,)  # MLflow's file store keeps artifacts inside its folder
    return ()


class _Trust:
    """The locations a resolution trusts: TRUSTED_MODEL_PREFIXES when set (it replaces the
    default), else the tracking store's (`store_names`, then `store_locations`, read only when
    a location is not one of its names)."""

    def __init__(self, explicit: tuple[str, ...] | None, tracking_uri: str) -> None:
        self.explicit = explicit
        self.tracking_uri = tracking_uri
        self._locations: tuple[str, ...] | None = None

    def check(self, uri: str, files_of: str | None = None) -> None:
        if self.explicit is not None:
            check_trusted(uri, self.explicit, files_of)
            return
        names = store_names(self.tracking_uri)
        if uris.is_trusted(uri, names):
            return
        if self._locations is None:
            self._locations = store_locations(self.tracking_uri)
        check_trusted(uri, names + self._locations, files_of)


def resolve_model(
    uri: str,
    trusted_prefixes: tuple[str, ...] | None = None,
    *,
    tracking_uri: str | None = None,
) -> ModelRef:
    """Pin `uri` to an immutable model: an alias or "latest" becomes a concrete version.

    The URI must lie under one of `trusted_prefixes`, and so must the location the registry or
    run says the model's files are at: that location is where they are then read from. None
    (TRUSTED_MODEL_PREFIXES unset) trusts the tracking store's: `models:/` and `runs:/`, what a
    tracking server serves (`mlflow-artifacts:/`), and the artifact locations the store's
    experiments record, wherever this process runs. `tracking_uri` is the registry's (the
    settings'); None: what MLflow itself reads, MLFLOW_TRACKING_URI.
    """
    if tracking_uri is None:
        tracking_uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    trust = _Trust(trusted_prefixes, tracking_uri)
    uri = uri.strip()
    uris.check_no_credentials(uri, "model URI")
    trust.check(uri)
    if uri.startswith(("models:/", "runs:/")):
        _check_store_exists(uri, tracking_uri)
    try:
        if uri.startswith("models:/"):
            model = _resolve_registered(uri, tracking_uri)
        elif uri.startswith("runs:/"):
            model = _resolve_run(uri)
        else:  # a direct artifact location: its MLmodel file says which run logged it
            with ModelFiles(uri) as files:
                run_id = run_id_of(files.mlmodel_text(), uri)
            return ModelRef(uri=uri, resolved_uri=uri, run_id=run_id)
        if model.location is None:
            model = dataclasses.replace(model, location=_files_location(model))
    except Exception as error:  # noqa: BLE001 - translated to a clear error, or re-raised
        raise as_scoring_error(error, uri) from None
    assert model.location is not None  # a location of its own, or MLflow's for it
    uris.check_no_credentials(model.location, "the model's file location")
    trust.check(model.location, files_of=model.resolved_uri)
    return model


def _check_store_exists(uri: str, tracking_uri: str) -> None:
    """Refuse a sqlite store that is not there, before MLflow creates an empty one.

    `sqlite:///mlflow.db` (the default) is relative to the current folder: from another folder
    it names no store, and MLflow would leave an empty mlflow.db there and say only that the
    model is not found.
    """
    if not tracking_uri.startswith("sqlite:///"):
        return
    path = tracking_uri.removeprefix("sqlite:///")
    if os.path.isfile(path):
        return
    where = f"{os.path.abspath(path)}" + ("" if os.path.isabs(path) else ", in the current folder")
    raise ModelNotFoundError(
        f"cannot find model {display_uri(uri)}: MLFLOW_TRACKING_URI {tracking_uri} names no "
        f"MLflow store ({where}): run from the folder you trained in, or set "
        "MLFLOW_TRACKING_URI to the store's absolute sqlite://// path or to a tracking server"
    )


def _files_location(model: ModelRef) -> str:
    """Where MLflow says the files of a resolved model are (its artifact location)."""
    client = _client(model.resolved_uri)
    if model.resolved_uri.startswith("runs:/"):
        # MLflow 3 keeps a run's model as a logged model of that name, with its own location.
        run_id, _, path = model.resolved_uri.removeprefix("runs:/").partition("/")
        name, _, rest = path.partition("/")
        run = client.get_run(run_id)
        logged: list[LoggedModel] = []
        if name and "'" not in name:
            logged = client.search_logged_models(
                experiment_ids=[run.info.experiment_id], filter_string=f"name = '{name}'"
            )
        matched = next((m for m in logged if m.source_run_id == run_id), None)
        base = matched.artifact_location if matched else uris.join(run.info.artifact_uri, name)
        return uris.join(base, rest) if rest else base
    if model.name and model.version:
        return client.get_model_version_download_uri(model.name, model.version)
    logged_model = client.get_logged_model(model.resolved_uri.removeprefix("models:/"))
    return logged_model.artifact_location


def _resolve_registered(uri: str, tracking_uri: str) -> ModelRef:
    from ride_duration.model import registry  # its HTTP client and sqlite, only when needed

    path = uri.removeprefix("models:/").strip("/")
    name, _, suffix = path.partition("/")
    # Which version: "@alias", a number, "latest", or "" (a logged model's id in `name`).
    selector = suffix.lower()
    if "@" in name and not suffix:
        name, alias = name.rsplit("@", 1)
        selector = f"@{alias}"
    if selector.startswith("@") or selector.isdigit() or selector == "latest":
        quick = registry.lookup(tracking_uri, name, selector)
        if quick is not None:
            return ModelRef(
                uri=uri,
                resolved_uri=f"models:/{quick.name}/{quick.version}",
                name=quick.name,
                version=quick.version,
                run_id=quick.run_id,
                location=quick.location,
            )
        if registry.covers(tracking_uri) and not mlflow_installed():
            raise ModelNotFoundError(
                f"cannot find model {display_uri(uri)} in the registry at "
                f"{display_uri(tracking_uri)}"
            )
    client = _client(uri)
    if selector.startswith("@"):
        version = client.get_model_version_by_alias(name, selector[1:])
    elif selector.isdigit():
        version = client.get_model_version(name, selector)
    elif selector == "latest":
        versions = client.search_model_versions(f"name = '{name}'")
        if not versions:
            raise ModelNotFoundError(f"registered model {name!r} has no versions")
        version = max(versions, key=lambda v: int(v.version))
    elif not selector:
        logged = client.get_logged_model(name)
        return ModelRef(
            uri=uri, resolved_uri=f"models:/{logged.model_id}", run_id=logged.source_run_id
        )
    else:
        raise ModelNotFoundError(
            f"model URI {uri!r} is not of the form models:/NAME@ALIAS or models:/NAME/VERSION"
        )
    return ModelRef(
        uri=uri,
        resolved_uri=f"models:/{version.name}/{version.version}",
        name=version.name,
        version=str(version.version),
        run_id=version.run_id,
    )


def _resolve_run(uri: str) -> ModelRef:
    run_id = uri.removeprefix("runs:/").split("/", 1)[0]
    client = _client(uri)
    client.get_run(run_id)  # fails clearly for an unknown run
    registered = client.search_model_versions(f"run_id = '{run_id}'")
    if len(registered) == 1:
        return ModelRef(
            uri=uri,
            resolved_uri=uri,
            name=registered[0].name,
            version=str(registered[0].version),
            run_id=run_id,
        )
    return ModelRef(uri=uri, resolved_uri=uri, run_id=run_id)


def _client(uri: str) -> MlflowClient:
    """MLflow's client, for what `registry` cannot settle; one line when MLflow is not here."""
    require_mlflow(f"resolving {display_uri(uri)}")
    from mlflow import MlflowClient

    return MlflowClient()
