"""MLflow's REST API read without MLflow: one GET for the registry's answers and for a model's
files when the tracking server serves them (`mlflow-artifacts:` locations).

A server that asks for credentials gets them as MLflow's own client sends them: the
MLFLOW_TRACKING_TOKEN as a bearer token, else MLFLOW_TRACKING_USERNAME and
MLFLOW_TRACKING_PASSWORD as basic auth. They are MLflow's variables, read where MLflow would
read them; no credential reaches a log.
"""

from __future__ import annotations

import base64
import http.client
import logging
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request

from ride_duration.core.uris import display_uri

logger = logging.getLogger(__name__)

# MLflow's own defaults for its HTTP variables, used when they are unset (the settings set them).
MLFLOW_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": 7,
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": 2,
    "MLFLOW_HTTP_REQUEST_TIMEOUT": 120,
}
ARTIFACTS_ROOT = "/api/2.0/mlflow-artifacts/artifacts"
# A server that did not answer, after the retries, is not asked again by this process for this
# long: one command asks it several things (its artifact locations for the trust, then the
# version, then MODEL_LOCATION's trust), and each would wait through the retries again.
UNANSWERED_SECONDS = 60.0
_unanswered: dict[str, tuple[float, OSError]] = {}  # server -> when it did not answer, and how


def open_url(url: str) -> http.client.HTTPResponse | None:
    """The answer to a GET of `url`, with the tracking server's credentials; None for an HTTP
    error (a 404, a 401), which is logged at DEBUG. A server that does not answer raises
    URLError."""
    try:
        return _open(url)
    except urllib.error.HTTPError as error:
        logger.debug("MLflow answered %s to %s", error.code, display_uri(url))
        error.close()
        return None


def served_file_url(uri: str, tracking_uri: str, name: str) -> str:
    """The URL of the file `name` in the served folder `uri` (`mlflow-artifacts:/PATH`, or
    `mlflow-artifacts://HOST:PORT/PATH`), on the tracking server unless `uri` names a host,
    as MLflow's own client resolves it."""
    served, tracking = urllib.parse.urlsplit(uri), urllib.parse.urlsplit(tracking_uri)
    if tracking.scheme not in ("http", "https"):
        raise ValueError(
            f"{display_uri(uri)} is served by an MLflow tracking server, and MLFLOW_TRACKING_URI "
            f"is {display_uri(tracking_uri)}, not its http(s) URL"
        )
    path = "/".join(
        part.strip("/") for part in (tracking.path, ARTIFACTS_ROOT, served.path, name) if part
    )
    quoted = urllib.parse.quote(f"/{path}")
    return urllib.parse.urlunsplit(
        (tracking.scheme, served.netloc or tracking.netloc, quoted, "", "")
    )


def download_served(uri: str, tracking_uri: str, local_folder: str, only: tuple[str, ...]) -> str:
    """Copy the files `only` names of the served folder `uri` into `local_folder` (those that
    exist: a 404 is a file the folder does not have); return it. Any other refusal is an
    OSError naming the status."""
    for name in only:
        url = served_file_url(uri, tracking_uri, name)
        try:
            answer = _open(url)
        except urllib.error.HTTPError as error:
            error.close()
            if error.code == 404:
                continue
            raise OSError(f"{display_uri(url)} answered HTTP {error.code}") from None
        with answer, open(os.path.join(local_folder, name), "wb") as target:
            shutil.copyfileobj(answer, target)
    return local_folder


def _open(url: str) -> http.client.HTTPResponse:
    """GET `url` with the tracking server's credentials; HTTPError for a refusal.

    A server that does not answer is asked again as MLflow's client would
    (MLFLOW_HTTP_REQUEST_MAX_RETRIES more times, waiting BACKOFF_FACTOR, then twice as long
    each time), then its URLError is raised, and raised at once for UNANSWERED_SECONDS after.
    """
    server = urllib.parse.urlsplit(url).netloc
    unanswered = _unanswered.get(server)
    if unanswered is not None and time.monotonic() - unanswered[0] < UNANSWERED_SECONDS:
        raise unanswered[1]
    retries, backoff, timeout = (_mlflow_number(name) for name in MLFLOW_DEFAULTS)
    request = urllib.request.Request(url, headers=_credentials())
    attempt = 0
    while True:
        try:
            # typeshed types urlopen's answer as Any; for an http(s) URL it is an HTTPResponse.
            answer: http.client.HTTPResponse = urllib.request.urlopen(request, timeout=timeout)
            _unanswered.pop(server, None)
            return answer
        except urllib.error.HTTPError:
            raise
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            if attempt >= retries:
                _unanswered[server] = (time.monotonic(), error)
                raise
            wait = backoff * 2**attempt
            logger.debug("%s did not answer (%s); again in %.0f s", display_uri(url), error, wait)
            time.sleep(wait)
            attempt += 1


def _mlflow_number(name: str) -> float:
    """MLflow's HTTP variable `name` as a number, else MLflow's default for it."""
    try:
        return max(float(os.environ.get(name, MLFLOW_DEFAULTS[name])), 0)
    except ValueError:
        return MLFLOW_DEFAULTS[name]


def _credentials() -> dict[str, str]:
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return {"Authorization": f"Bearer {token}"}
    user, password = (os.environ.get(f"MLFLOW_TRACKING_{n}") for n in ("USERNAME", "PASSWORD"))
    if user and password:
        pair = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}
    return {}
