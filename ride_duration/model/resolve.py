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
import functools
import logging
import os
import tempfile
from dataclasses import dataclass
from typing import Any

from ride_duration.core import storage, uris
from ride_duration.core.errors import (
    ModelNotFoundError,
    ModelNotTrustedError,
    TrackingServerUnreachableError,
    first_line,
)
from ride_duration.core.uris import display_uri
from ride_duration.forest.compiled import CompiledForest
from ride_duration.model import registry

logger = logging.getLogger(__name__)

# The registry and runs of the tracking server, its served artifacts, and the artifact folder
# a local store keeps beside the current folder (sqlite:///mlflow.db keeps them in ./mlruns).
DEFAULT_TRUSTED = ("models:/", "runs:/", "mlflow-artifacts:/", "mlruns")


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


def check_trusted(uri: str, trusted_prefixes: tuple[str, ...], files_of: str | None = None) -> None:
    """Refuse a model location outside TRUSTED_MODEL_PREFIXES: loading a pickle runs its code.

    Matched by whole path segments and buckets (`uris.is_under`); `files_of` names the model
    URI whose files `uri` holds, for the message.
    """
    if not uris.is_trusted(uri, trusted_prefixes):
        what = f"model {display_uri(uri)}"
        if files_of:
            what = f"model {display_uri(files_of)} has its files at {display_uri(uri)}, which"
        raise ModelNotTrustedError(
            f"{what} is not in a trusted location "
            f"({', '.join(trusted_prefixes) or 'none'}): loading a model runs its code, so add "
            "its prefix to TRUSTED_MODEL_PREFIXES only if you trust whoever can write there"
        )


def resolve_model(uri: str, trusted_prefixes: tuple[str, ...] = DEFAULT_TRUSTED) -> ModelRef:
    """Pin `uri` to an immutable model: an alias or "latest" becomes a concrete version.

    The URI must lie under one of `trusted_prefixes` (`models:/` and `runs:/` name the tracking
    server's registry and runs), and so must the location the registry or run says the model's
    files are at: that location is where they are then read from.
    """
    uri = uri.strip()
    uris.check_no_credentials(uri, "model URI")
    check_trusted(uri, trusted_prefixes)
    try:
        if uri.startswith("models:/"):
            model = _resolve_registered(uri)
        elif uri.startswith("runs:/"):
            model = _resolve_run(uri)
        else:  # a direct artifact location: its MLmodel file says which run logged it
            local_path = _download(uri)
            return ModelRef(uri=uri, resolved_uri=uri, run_id=_read_mlmodel(local_path).run_id)
        if model.location is None:
            model = dataclasses.replace(model, location=_files_location(model))
    except Exception as error:  # noqa: BLE001 - translated to a clear error, or re-raised
        raise _as_scoring_error(error, uri) from None
    uris.check_no_credentials(model.location, "the model's file location")
    check_trusted(model.location, trusted_prefixes, files_of=model.resolved_uri)
    return model


def _files_location(model: ModelRef) -> str:
    """Where MLflow says the files of a resolved model are (its artifact location)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    if model.resolved_uri.startswith("runs:/"):
        # MLflow 3 keeps a run's model as a logged model of that name, with its own location.
        run_id, _, path = model.resolved_uri.removeprefix("runs:/").partition("/")
        name, _, rest = path.partition("/")
        run = client.get_run(run_id)
        logged = []
        if name and "'" not in name:
            logged = client.search_logged_models(
                experiment_ids=[run.info.experiment_id], filter_string=f"name = '{name}'"
            )
        matched = next((m for m in logged if m.source_run_id == run_id), None)
        base = matched.artifact_location if matched else uris.join(run.info.artifact_uri, name)
        return uris.join(base, rest) if rest else base
    if model.name and model.version:
        return client.get_model_version_download_uri(model.name, model.version)
    logged = client.get_logged_model(model.resolved_uri.removeprefix("models:/"))
    return logged.artifact_location


def _resolve_registered(uri: str) -> ModelRef:
    path = uri.removeprefix("models:/").strip("/")
    name, _, suffix = path.partition("/")
    # Which version: "@alias", a number, "latest", or "" (a logged model's id in `name`).
    selector = suffix.lower()
    if "@" in name and not suffix:
        name, alias = name.rsplit("@", 1)
        selector = f"@{alias}"
    if selector.startswith("@") or selector.isdigit() or selector == "latest":
        quick = registry.lookup(os.environ.get("MLFLOW_TRACKING_URI", ""), name, selector)
        if quick is not None:
            return ModelRef(
                uri=uri,
                resolved_uri=f"models:/{quick.name}/{quick.version}",
                name=quick.name,
                version=quick.version,
                run_id=quick.run_id,
                location=quick.location,
            )
    from mlflow import MlflowClient

    client = MlflowClient()
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
    from mlflow import MlflowClient

    run_id = uri.removeprefix("runs:/").split("/", 1)[0]
    client = MlflowClient()
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


@functools.lru_cache(maxsize=8)
def load_compiled(resolved_uri: str, location: str | None = None) -> CompiledForest | None:
    """The model's compiled forest (`forest.npz` beside its pickle), or None when it has none.

    Plain arrays, read with numpy and no pickle: loading it runs no code and needs neither
    scikit-learn nor MLflow. A file that does not load is reported and the pickle is used.
    """
    from ride_duration.forest import npz

    try:
        folder = _download(location or resolved_uri, only=("MLmodel", npz.FILE_NAME))
    except Exception as error:  # noqa: BLE001 - translated to a clear error, or re-raised
        raise _as_scoring_error(error, resolved_uri) from None
    path = os.path.join(folder, npz.FILE_NAME)
    if not os.path.isfile(path):
        return None
    try:
        return npz.load(path)
    except ValueError as error:
        logger.warning(
            "%s of %s does not load (%s): scoring with scikit-learn",
            path,
            display_uri(resolved_uri),
            error,
        )
        return None


@functools.lru_cache(maxsize=8)
def load_model(resolved_uri: str, location: str | None = None) -> Any:
    """The model behind a resolved URI, loaded once per process and reused across months.

    `location` is where its files are, when known. A scikit-learn model comes back as the raw
    estimator (a Pipeline, so scoring can take its fast path); any other flavour comes back as
    an MLflow pyfunc model.
    """
    try:
        local_path = _download(location or resolved_uri)
        mlmodel = _read_mlmodel(local_path)
        if "sklearn" in mlmodel.flavors:
            return _load_sklearn(local_path, mlmodel.flavors["sklearn"])
        import mlflow.pyfunc

        return mlflow.pyfunc.load_model(local_path)
    except Exception as error:  # noqa: BLE001 - translated to a clear error, or re-raised
        raise _as_scoring_error(error, resolved_uri) from None


def _load_sklearn(local_path: str, flavor: dict) -> Any:
    """The estimator of an sklearn-flavoured model folder, warning when versions differ."""
    import sklearn

    trained_with = flavor.get("sklearn_version")
    if trained_with and trained_with != sklearn.__version__:
        logger.warning(
            "model was saved with scikit-learn %s but %s is installed; predictions may differ",
            trained_with,
            sklearn.__version__,
        )
    if flavor.get("serialization_format") in ("cloudpickle", "pickle"):
        # What mlflow.sklearn.load_model does for these formats, without importing MLflow.
        import cloudpickle

        with open(os.path.join(local_path, flavor["pickled_model"]), "rb") as handle:
            return cloudpickle.load(handle)
    import mlflow.sklearn

    return mlflow.sklearn.load_model(local_path)


def _download(uri: str, only: tuple[str, ...] | None = None) -> str:
    """A local folder holding the model's files: read in place, copied from S3, or by MLflow.

    `only` names the files needed, when not all are (the copy from S3 then skips the others).
    """
    if "://" not in uri and os.path.isdir(uri):
        return uri
    if uri.startswith("s3://"):
        folder = tempfile.mkdtemp(prefix="ride-duration-model-")
        return storage.copy_folder(uri, folder, only)
    import mlflow.artifacts

    return mlflow.artifacts.download_artifacts(
        artifact_uri=uri, dst_path=tempfile.mkdtemp(prefix="ride-duration-model-")
    )


@dataclass(frozen=True)
class MLmodel:
    """What a model folder's MLmodel file says: its flavours and the run that logged it."""

    flavors: dict
    run_id: str | None


def _read_mlmodel(local_path: str) -> MLmodel:
    import yaml

    path = os.path.join(local_path, "MLmodel")
    if not os.path.isfile(path):
        raise ModelNotFoundError(f"no MLflow model at {display_uri(local_path)}: it has no MLmodel")
    with open(path, encoding="utf-8") as handle:
        content = yaml.safe_load(handle) or {}
    return MLmodel(flavors=content.get("flavors") or {}, run_id=content.get("run_id"))


def _as_scoring_error(error: Exception, uri: str) -> Exception:
    """Translate MLflow's errors into one actionable line; leave bugs alone."""
    from mlflow.exceptions import MlflowException

    if isinstance(
        error, (ModelNotFoundError, TrackingServerUnreachableError, ModelNotTrustedError)
    ):
        return error
    if _is_connection_failure(error):
        import mlflow

        return TrackingServerUnreachableError(
            f"MLflow tracking server {display_uri(mlflow.get_tracking_uri())} did not answer: "
            "start it or set MLFLOW_TRACKING_URI"
        )
    if isinstance(error, (MlflowException, OSError)):
        return ModelNotFoundError(f"cannot find model {display_uri(uri)}: {first_line(error)}")
    return error


def _is_connection_failure(error: BaseException) -> bool:
    import requests

    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, (requests.ConnectionError, ConnectionError, requests.Timeout)):
            return True
        # urllib3 (under requests, under MLflow's REST client) words a dead server this way
        # when the exception chain lost its type.
        text = str(seen)
        if "Max retries exceeded" in text or "Connection refused" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False
