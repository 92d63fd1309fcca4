"""A model's files: fetched from MLflow or a store, its MLmodel read, failures made clear."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

from ride_duration.core import storage
from ride_duration.core.errors import (
    ModelNotFoundError,
    ModelNotTrustedError,
    TrackingServerUnreachableError,
    first_line,
)
from ride_duration.core.uris import display_uri


def download(uri: str, only: tuple[str, ...] | None = None) -> str:
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


def read_mlmodel(local_path: str) -> MLmodel:
    import yaml

    path = os.path.join(local_path, "MLmodel")
    if not os.path.isfile(path):
        raise ModelNotFoundError(f"no MLflow model at {display_uri(local_path)}: it has no MLmodel")
    with open(path, encoding="utf-8") as handle:
        content = yaml.safe_load(handle) or {}
    return MLmodel(flavors=content.get("flavors") or {}, run_id=content.get("run_id"))


def as_scoring_error(error: Exception, uri: str) -> Exception:
    """Translate MLflow's errors into one actionable line; leave bugs alone."""
    from mlflow.exceptions import MlflowException

    if isinstance(
        error, (ModelNotFoundError, TrackingServerUnreachableError, ModelNotTrustedError)
    ):
        return error
    if is_connection_failure(error):
        import mlflow

        return TrackingServerUnreachableError(
            f"MLflow tracking server {display_uri(mlflow.get_tracking_uri())} did not answer: "
            "start it or set MLFLOW_TRACKING_URI"
        )
    if isinstance(error, (MlflowException, OSError)):
        return ModelNotFoundError(f"cannot find model {display_uri(uri)}: {first_line(error)}")
    return error


def is_connection_failure(error: BaseException) -> bool:
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
