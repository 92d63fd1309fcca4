"""MLflow's REST API without MLflow (`model.rest`): its URLs, credentials and downloads, on a
small HTTP server of the test's own."""

from __future__ import annotations

import http.server
import threading
import urllib.error
from typing import ClassVar

import pytest

from ride_duration.model import rest

SERVED = "mlflow-artifacts:/1/models/m-1/artifacts"


@pytest.mark.parametrize(
    ("uri", "tracking_uri", "url"),
    [
        (
            SERVED,
            "http://h:5000",
            "http://h:5000/api/2.0/mlflow-artifacts/artifacts/1/models/m-1/artifacts/MLmodel",
        ),
        (
            SERVED,
            "https://h/mlflow/",
            "https://h/mlflow/api/2.0/mlflow-artifacts/artifacts/1/models/m-1/artifacts/MLmodel",
        ),
        (
            "mlflow-artifacts://other:5001/1/x",
            "http://h:5000",
            "http://other:5001/api/2.0/mlflow-artifacts/artifacts/1/x/MLmodel",
        ),
        (
            "mlflow-artifacts:/1/a b",
            "http://h:5000",
            "http://h:5000/api/2.0/mlflow-artifacts/artifacts/1/a%20b/MLmodel",
        ),
    ],
)
def test_a_served_file_is_where_mlflows_client_looks(uri, tracking_uri, url):
    assert rest.served_file_url(uri, tracking_uri, "MLmodel") == url


@pytest.mark.parametrize("tracking_uri", ["sqlite:///mlflow.db", "", "file:///tmp/mlruns"])
def test_served_files_need_the_tracking_servers_url(tracking_uri):
    with pytest.raises(ValueError, match="is served by an MLflow tracking server"):
        rest.served_file_url(SERVED, tracking_uri, "MLmodel")


class Files(http.server.BaseHTTPRequestHandler):
    """Serves `files` (path -> body) and answers 401 under /private/; records Authorization."""

    files: ClassVar[dict[str, bytes]] = {}
    seen: ClassVar[list[str | None]] = []

    def do_GET(self):
        self.seen.append(self.headers.get("Authorization"))
        if self.path.startswith("/private/"):
            self.send_response(401)
            self.end_headers()
            return
        body = self.files.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    Files.files.clear()
    Files.seen.clear()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Files)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_served_folders_named_files_are_copied_and_a_missing_one_skipped(server, tmp_path):
    root = "/api/2.0/mlflow-artifacts/artifacts/1/models/m-1/artifacts"
    Files.files[f"{root}/MLmodel"] = b"run_id: r\n"
    rest.download_served(SERVED, server, str(tmp_path), ("MLmodel", "forest.npz"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MLmodel"]
    assert (tmp_path / "MLmodel").read_bytes() == b"run_id: r\n"


def test_a_refused_download_is_an_oserror_with_its_status(server, tmp_path):
    with pytest.raises(OSError, match="answered HTTP 401"):
        rest.download_served(SERVED, f"{server}/private", str(tmp_path), ("MLmodel",))


@pytest.mark.parametrize(
    ("variables", "header"),
    [
        ({}, None),
        ({"MLFLOW_TRACKING_TOKEN": "t0k"}, "Bearer t0k"),
        ({"MLFLOW_TRACKING_USERNAME": "u", "MLFLOW_TRACKING_PASSWORD": "p"}, "Basic dTpw"),
        ({"MLFLOW_TRACKING_USERNAME": "u"}, None),  # half a pair is none
        (
            {
                "MLFLOW_TRACKING_TOKEN": "t",
                "MLFLOW_TRACKING_USERNAME": "u",
                "MLFLOW_TRACKING_PASSWORD": "p",
            },
            "Bearer t",
        ),
    ],
)
def test_the_tracking_servers_credentials_go_as_mlflow_sends_them(
    server, monkeypatch, variables, header
):
    for name in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert rest.open_url(f"{server}/nothing") is None  # a 404
    assert Files.seen == [header]


@pytest.mark.parametrize(
    ("retries", "backoff", "waits"),
    [
        ("0", "1", []),
        ("3", "1", [1, 2, 4]),
        ("2", "0.5", [0.5, 1]),
        ("x", "y", [2, 4, 8, 16, 32, 64, 128]),
    ],
)
def test_a_server_that_does_not_answer_is_asked_again_as_mlflow_would(
    monkeypatch, retries, backoff, waits
):
    """MLFLOW_HTTP_REQUEST_MAX_RETRIES more times, after BACKOFF_FACTOR doubled each time;
    MLflow's defaults (7, 2) for values that are not numbers."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", retries)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", backoff)
    slept: list[float] = []
    monkeypatch.setattr(rest.time, "sleep", slept.append)
    calls = []

    def refuse(request, timeout):
        calls.append(request.full_url)
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    monkeypatch.setattr(rest.urllib.request, "urlopen", refuse)
    with pytest.raises(urllib.error.URLError):
        rest.open_url("http://h/api")
    assert slept == waits
    assert len(calls) == len(waits) + 1


def test_a_refusal_is_not_asked_again(monkeypatch):
    calls = []

    def refuse(request, timeout):
        calls.append(1)
        raise urllib.error.HTTPError(request.full_url, 404, "Not Found", {}, None)

    monkeypatch.setattr(rest.urllib.request, "urlopen", refuse)
    assert rest.open_url("http://h/api") is None
    assert calls == [1]


def test_a_server_that_did_not_answer_is_not_waited_for_again(monkeypatch):
    """One command asks a server several things; once it did not answer after the retries,
    the next question fails at once, for UNANSWERED_SECONDS, then it is asked again."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    slept: list[float] = []
    monkeypatch.setattr(rest.time, "sleep", slept.append)
    now = [1000.0]
    monkeypatch.setattr(rest.time, "monotonic", lambda: now[0])
    calls = []

    def refuse(request, timeout):
        calls.append(request.full_url)
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    monkeypatch.setattr(rest.urllib.request, "urlopen", refuse)
    for _ in range(2):
        with pytest.raises(urllib.error.URLError):
            rest.open_url("http://h/api/first")
    assert (len(calls), slept) == (3, [1, 2])  # the second question waited for nothing
    with pytest.raises(urllib.error.URLError):
        rest.open_url("http://other/api")  # another server is asked
    assert len(calls) == 6
    now[0] += rest.UNANSWERED_SECONDS
    with pytest.raises(urllib.error.URLError):
        rest.open_url("http://h/api/again")
    assert len(calls) == 9
