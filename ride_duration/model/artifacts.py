"""A model's files: fetched from MLflow or a store, its MLmodel read, failures made clear.

MLflow is imported only to download from what only MLflow reads (`runs:/`, `models:/` without
a known location, a whole served `mlflow-artifacts:/` folder); the serving install, which has no
MLflow, reads local folders, S3 and a served folder's named files (`model.rest`), and is told in
one line what it cannot read.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from dataclasses import dataclass

from ride_duration.core import objects
from ride_duration.core.errors import (
    ConfigurationError,
    ModelNotFoundError,
    ModelNotTrustedError,
    TrackingServerUnreachableError,
    first_line,
)
from ride_duration.core.uris import display_uri


def mlflow_installed() -> bool:
    """Whether MLflow can be imported here (the serving install leaves it out)."""
    return importlib.util.find_spec("mlflow") is not None


def require_mlflow(what: str) -> None:
    """Refuse, in one line, what only MLflow can do when MLflow is not installed."""
    if not mlflow_installed():
        raise ConfigurationError(
            f"{what} needs MLflow, which the serving install leaves out: name the model as "
            "models:/NAME@ALIAS or models:/NAME/VERSION (on an http(s) or sqlite:/// tracking "
            "server) or by its folder or s3:// location, or use the full image"
        )


def download(uri: str, only: tuple[str, ...] | None = None) -> str:
    """A local folder holding the model's files: read in place, copied from S3, or by MLflow.

    `only` names the files needed, when not all are (the copy from S3 then skips the others).
    """
    if "://" not in uri and os.path.isdir(uri):
        return uri
    import tempfile

    if uri.startswith("s3://"):
        folder = tempfile.mkdtemp(prefix="ride-duration-model-")
        return objects.copy_folder(uri, folder, only)
    if uri.startswith("mlflow-artifacts:") and only is not None and not mlflow_installed():
        from ride_duration.model import rest

        folder = tempfile.mkdtemp(prefix="ride-duration-model-")
        return rest.download_served(uri, _tracking_uri(), folder, only)
    require_mlflow(f"reading model files from {display_uri(uri)}")
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
    """The flavours and run of a model folder, from its MLmodel file (YAML)."""
    import yaml

    content = yaml.safe_load(_mlmodel_text(local_path)) or {}
    return MLmodel(flavors=content.get("flavors") or {}, run_id=content.get("run_id"))


# How MLflow writes a run id in MLmodel: a top-level line, the id 32 lowercase hex digits.
_PLAIN_RUN_ID = re.compile(r"^run_id: ([0-9a-f]{32})$", re.MULTILINE)
_RUN_ID_KEY = re.compile(r"""^["']?run_id["']?\s*:""", re.MULTILINE)


def read_run_id(local_path: str) -> str | None:
    """The run that logged a model folder, from its MLmodel file.

    MLflow's plain `run_id: <32 hex digits>` line is read as it is, and a file that never says
    "run_id" (a model saved outside a run) has none, sparing the YAML parser's import (a tenth
    of a serving cold start); an MLmodel written any other way is parsed.
    """
    text = _mlmodel_text(local_path)
    if "run_id" not in text:
        return None
    plain = _PLAIN_RUN_ID.findall(text)
    if len(plain) == 1 and len(_RUN_ID_KEY.findall(text)) == 1:
        return plain[0]
    return read_mlmodel(local_path).run_id


def _mlmodel_text(local_path: str) -> str:
    path = os.path.join(local_path, "MLmodel")
    if not os.path.isfile(path):
        raise ModelNotFoundError(f"no MLflow model at {display_uri(local_path)}: it has no MLmodel")
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def as_scoring_error(error: Exception, uri: str) -> Exception:
    """Translate MLflow's errors into one actionable line; leave bugs alone."""
    if isinstance(
        error,
        (
            ModelNotFoundError,
            TrackingServerUnreachableError,
            ModelNotTrustedError,
            ConfigurationError,
        ),
    ):
        return error
    if is_connection_failure(error):
        return server_unreachable(_tracking_uri())
    # MLflow's errors can only have been raised once MLflow was imported.
    exceptions = sys.modules.get("mlflow.exceptions")
    known = (OSError,) if exceptions is None else (exceptions.MlflowException, OSError)
    if isinstance(error, known):
        return ModelNotFoundError(f"cannot find model {display_uri(uri)}: {first_line(error)}")
    return error


def server_unreachable(
    tracking_uri: str, reason: str | BaseException = ""
) -> TrackingServerUnreachableError:
    """The error of a tracking server that does not answer (`reason`: the network's words)."""
    if isinstance(reason, OSError) and reason.strerror:
        reason = reason.strerror  # "Connection refused", not "[Errno 111] Connection refused"
    because = f" ({reason})" if str(reason) else ""
    return TrackingServerUnreachableError(
        f"MLflow tracking server {display_uri(tracking_uri)} did not answer{because}: "
        "start it or set MLFLOW_TRACKING_URI"
    )


def _tracking_uri() -> str:
    if "mlflow" in sys.modules:
        return sys.modules["mlflow"].get_tracking_uri()
    return os.environ.get("MLFLOW_TRACKING_URI", "")


def is_connection_failure(error: BaseException) -> bool:
    """Whether `error`, or one it came from, says a server did not answer."""
    kinds: tuple[type[BaseException], ...] = (ConnectionError,)
    requests = sys.modules.get("requests")  # MLflow's HTTP client, when it has been used
    if requests is not None:
        kinds += (requests.ConnectionError, requests.Timeout)
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, kinds):
            return True
        # urllib3 (under requests, under MLflow's REST client) words a dead server this way
        # when the exception chain lost its type.
        text = str(seen)
        if "Max retries exceeded" in text or "Connection refused" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False
