"""The Prefect API a command talks to (`orchestration.server`): its probes and its state file.

Starting a real server is tests/integration/test_local_prefect.py's; these are the probes it
decides with, against real sockets on 127.0.0.1.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ride_duration.orchestration import server


class Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/api/health" else 404)
        self.send_header("Content-Length", "4")
        self.end_headers()
        self.wfile.write(b"true")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def answering():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/api"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_api_that_answers_its_health_check(answering):
    assert server._healthy(answering)
    assert not server._refused(answering)
    assert server._port_taken(int(answering.rsplit(":", 1)[1].split("/")[0]))


def test_nothing_listening_is_refused_and_not_healthy(closed_port):
    url = f"http://127.0.0.1:{closed_port}/api"
    assert not server._healthy(url)
    assert server._refused(url)
    assert not server._port_taken(closed_port)


def test_a_server_without_the_health_route_is_not_healthy(answering):
    assert not server._healthy(answering.removesuffix("/api") + "/other")


@pytest.mark.parametrize("content", [None, "", "{", "[1]"])
def test_a_missing_or_unreadable_state_file_is_no_state(tmp_path, content):
    if content is not None:
        (tmp_path / server.STATE_FILE).write_text(content)
    state = server._read_state(tmp_path)
    assert state in ({}, [1])  # a JSON list reads, and has no "url"


def test_the_state_file_keeps_the_managed_url(tmp_path):
    server._write_state(tmp_path, {"url": "http://127.0.0.1:4200/api"})
    assert server._read_state(tmp_path) == {"url": "http://127.0.0.1:4200/api"}


def test_a_configured_api_that_refuses_fails_at_once_with_one_line(closed_port, tmp_path):
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    url = f"http://127.0.0.1:{closed_port}/api"
    said: list[str] = []
    with (
        temporary_settings({PREFECT_API_URL: url, PREFECT_HOME: str(tmp_path)}),
        pytest.raises(server.PrefectServerError, match="refused the connection") as caught,
    ):
        server.ensure_api(port=closed_port, timeout_seconds=1, say=said.append)
    assert f"127.0.0.1:{closed_port}" in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("command", server.STOP_COMMANDS)
def test_the_commands_that_stop_the_local_server_exist(command):
    """The hint a started server prints names commands that work: a make target of the
    project, and Prefect's own command through this environment's Python."""
    from tests.conftest import REPO

    words = command.split()
    if words[0] == "make":
        assert re.search(rf"^{words[1]}:", (REPO / "Makefile").read_text(), re.MULTILINE)
    else:
        help_text = subprocess.run(
            [sys.executable, *words[1:], "--help"], capture_output=True, text=True, timeout=120
        )
        assert help_text.returncode == 0, help_text.stderr
        assert "Stop a Prefect server" in help_text.stdout
