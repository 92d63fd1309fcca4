"""A model's files: fetched from MLflow or a store, its MLmodel read, failures made clear.

A local folder is read in place; files on S3 or served by the tracking server are fetched one
by one, only those needed; MLflow is imported only for what only it reads (the serving install
says so in one line). An MLmodel that MLflow did not write is a one-line refusal.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import tempfile
import urllib.parse
from dataclasses import dataclass

from ride_duration.core import objects
from ride_duration.core.errors import (
    ConfigurationError,
    ModelNotFoundError,
    ModelNotTrustedError,
    TrackingServerUnreachableError,
    first_line,
    network_words,
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


def local_folder(uri: str) -> str | None:
    """The local folder `uri` names (a path, or a `file:` URI), when it is one; else None."""
    if uri.startswith("file:"):
        parts = urllib.parse.urlsplit(uri)
        if parts.netloc not in ("", "localhost"):
            return None
        uri = urllib.parse.unquote(parts.path)
    elif "://" in uri or re.match(r"[A-Za-z][A-Za-z0-9+.-]+:", uri):
        return None
    return uri if os.path.isdir(uri) else None


class ModelFiles:
    """The files of one model location, as a local folder, fetched once and as asked for.

    A local folder is read in place, never copied. Anything else goes into one temporary folder
    (`ride-duration-model-*`), file by file where it can (S3, a served folder), else whole
    through MLflow; `close` removes it, so a long-lived process keeps no copies.
    """

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._local = local_folder(uri)
        self._temporary: tempfile.TemporaryDirectory[str] | None = None
        self._fetched: set[str] = set()
        self._whole = False

    @property
    def folder(self) -> str:
        """The local folder the files are in (or will be)."""
        if self._local is not None:
            return self._local
        if self._temporary is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="ride-duration-model-")
        return self._temporary.name

    def fetch(self, *names: str) -> str:
        """The folder, holding those of the files `names` the location has (the others are
        simply absent); each file is fetched at most once."""
        missing = tuple(name for name in names if name not in self._fetched)
        if self._local is not None or self._whole or not missing:
            return self.folder
        if self.uri.startswith("s3://"):
            objects.copy_folder(self.uri, self.folder, missing)
        elif self.uri.startswith("mlflow-artifacts:") and (
            # One GET a file where MLflow is not installed, or the server's REST API is read.
            not mlflow_installed() or _tracking_uri().startswith(("http://", "https://"))
        ):
            from ride_duration.model import rest

            rest.download_served(self.uri, _tracking_uri(), self.folder, missing)
        else:
            return self.fetch_all()
        self._fetched.update(missing)
        return self.folder

    def fetch_all(self) -> str:
        """The folder, holding every file of the model."""
        if self._local is not None or self._whole:
            return self.folder
        if self.uri.startswith("s3://"):
            objects.copy_folder(self.uri, self.folder)
        else:
            require_mlflow(f"reading model files from {display_uri(self.uri)}")
            import mlflow.artifacts

            mlflow.artifacts.download_artifacts(artifact_uri=self.uri, dst_path=self.folder)
        self._whole = True
        return self.folder

    def mlmodel_text(self) -> str:
        """The text of the model's MLmodel file; read once per remote location and process,
        as the model it describes is loaded once (`model.loading`)."""
        if self._local is not None:
            return _mlmodel_text(self._local)
        text = _REMOTE_MLMODELS.get(self.uri)
        if text is None:
            text = _mlmodel_text(self.fetch("MLmodel"), shown=self.uri)
            _REMOTE_MLMODELS[self.uri] = text
            while len(_REMOTE_MLMODELS) > _REMOTE_MLMODELS_KEPT:
                _REMOTE_MLMODELS.pop(next(iter(_REMOTE_MLMODELS)), None)
        return text

    def close(self) -> None:
        """Remove the temporary folder and what was fetched into it."""
        if self._temporary is not None:
            self._temporary.cleanup()
            self._temporary = None
            self._fetched.clear()
            self._whole = False

    def __enter__(self) -> ModelFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# The last remote locations' MLmodel texts: resolving a location, then loading it, fetch it once.
_REMOTE_MLMODELS: dict[str, str] = {}
_REMOTE_MLMODELS_KEPT = 8


@dataclass(frozen=True)
class MLmodel:
    """What a model folder's MLmodel file says: its flavours and the run that logged it."""

    flavors: dict[str, dict[str, object]]
    run_id: str | None


def parse_mlmodel(text: str, shown: str) -> MLmodel:
    """The flavours and run an MLmodel file's text (YAML) gives, each checked for the type
    MLflow writes: anything else is a one-line ModelNotFoundError about the model at `shown`."""
    import yaml

    try:
        content = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise not_a_model(shown, f"its MLmodel is not YAML ({first_line(error)[:60]})") from None
    if content is None:
        content = {}
    if not isinstance(content, dict):
        raise not_a_model(shown, f"its MLmodel is {kind_of(content)}, not a mapping of fields")
    run_id = content.get("run_id")
    if run_id is not None and not isinstance(run_id, str):
        raise not_a_model(shown, f"its MLmodel's run_id is {kind_of(run_id)}, not text")
    flavors = content.get("flavors") or {}
    if not isinstance(flavors, dict):
        raise not_a_model(shown, f"its MLmodel's flavors is {kind_of(flavors)}, not a mapping")
    for name, flavor in flavors.items():
        if not isinstance(flavor, dict):
            raise not_a_model(
                shown, f"its MLmodel's flavor {name!s:.40} is {kind_of(flavor)}, not a mapping"
            )
    return MLmodel(flavors={str(name): flavor for name, flavor in flavors.items()}, run_id=run_id)


def read_mlmodel(local_path: str) -> MLmodel:
    """The flavours and run of a local model folder, from its MLmodel file (YAML)."""
    return parse_mlmodel(_mlmodel_text(local_path), local_path)


# How MLflow writes a run id in MLmodel: a top-level line, the id 32 lowercase hex digits.
_PLAIN_RUN_ID = re.compile(r"^run_id: ([0-9a-f]{32})$", re.MULTILINE)
_RUN_ID_KEY = re.compile(r"""^["']?run_id["']?\s*:""", re.MULTILINE)


def run_id_of(text: str, shown: str) -> str | None:
    """The run that logged a model, from its MLmodel file's text.

    MLflow's plain `run_id: <32 hex digits>` line is read as it is, and a file that never says
    "run_id" (a model saved outside a run) has none, sparing the YAML parser's import (a tenth
    of a serving cold start); an MLmodel written any other way is parsed and checked.
    """
    if "run_id" not in text:
        return None
    plain: list[str] = _PLAIN_RUN_ID.findall(text)
    if len(plain) == 1 and len(_RUN_ID_KEY.findall(text)) == 1:
        return plain[0]
    return parse_mlmodel(text, shown).run_id


def read_run_id(local_path: str) -> str | None:
    """The run that logged a local model folder, from its MLmodel file (`run_id_of`)."""
    return run_id_of(_mlmodel_text(local_path), local_path)


def _mlmodel_text(local_path: str, shown: str | None = None) -> str:
    shown = shown or local_path
    path = os.path.join(local_path, "MLmodel")
    if not os.path.isfile(path):
        raise not_a_model(shown, "it has no MLmodel")
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except UnicodeDecodeError:
        raise not_a_model(shown, "its MLmodel is not UTF-8 text") from None


def not_a_model(shown: str, why: str) -> ModelNotFoundError:
    """The refusal of the model at `shown`: `why` its MLmodel is not MLflow's."""
    return ModelNotFoundError(f"no MLflow model at {display_uri(shown)}: {why}")


# YAML's values in words, for the type MLflow did not write (bool before int: True is an int).
_KINDS = ((bool, "true or false"), ((int, float), "a number"), (str, "text"), (list, "a list"))


def kind_of(value: object) -> str:
    """What a YAML value is, in words ("a number", "a list", "empty", ...)."""
    if value is None:
        return "empty"
    if isinstance(value, dict):
        return "a mapping"
    found = (words for kinds, words in _KINDS if isinstance(value, kinds))
    return next(found, "a " + type(value).__name__)  # a date, bytes: what YAML's tags make


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
    words = network_words(reason) if isinstance(reason, BaseException) else reason
    because = f" ({words})" if words else ""
    return TrackingServerUnreachableError(
        f"MLflow tracking server {display_uri(tracking_uri)} did not answer{because}: "
        "start it or set MLFLOW_TRACKING_URI"
    )


def _tracking_uri() -> str:
    if "mlflow" in sys.modules:
        return str(sys.modules["mlflow"].get_tracking_uri())
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
