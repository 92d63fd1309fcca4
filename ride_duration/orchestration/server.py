"""The Prefect API a command talks to: the one configured, or a local server started once.

Without `PREFECT_API_URL`, Prefect would start a temporary server inside every command (seconds
of start-up each time, and a 20 s limit that a busy machine misses). Instead the first command
starts `prefect server start` in the background on 127.0.0.1, with its pid in Prefect's own
`server.pid` (so `prefect server stop` stops it) and its URL in the active Prefect profile (so
later commands, `prefect deploy`, workers and the UI find it). Later commands reuse it, and start
it again if it was stopped. A `PREFECT_API_URL` the user configured is only waited for.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ride_duration.core import cli
from ride_duration.core.errors import ScoringError

STATE_FILE = "ride-duration-server.json"
# What stops it: the project's make target, or Prefect's command through this environment's
# Python (`prefect` itself may not be on PATH).
STOP_COMMANDS = ("make server-stop", "python -m prefect server stop")
PID_FILE = "server.pid"  # the name `prefect server stop` reads (prefect.cli._server_utils)
LOG_FILE = "server.log"


class PrefectServerError(ScoringError):
    """The Prefect API did not answer, or a local server could not be started."""


def ensure_api(*, port: int, timeout_seconds: float, say: Callable[[str], None]) -> str:
    """The URL of a Prefect API that answers, starting the local server when none is set.

    `say` receives one line for each thing worth telling the user (what is started, waited for).
    """
    from prefect.settings import PREFECT_HOME, get_current_settings

    home = Path(PREFECT_HOME.value()).expanduser()
    configured = get_current_settings().api.url
    managed = _read_state(home).get("url")
    if configured and configured.rstrip("/") != managed:
        _wait_for_configured(configured, timeout_seconds, say)
        return configured
    url = managed or f"http://127.0.0.1:{port}/api"
    with _locked(home):
        if not _healthy(url):
            _start(home, url, timeout_seconds, say)
        if not configured:
            _remember(url)
            say(
                f"Prefect API: {url} (the UI is at {url.removesuffix('/api')}); later commands "
                f"use it too. Stop it with `{STOP_COMMANDS[0]}` in the project's folder, or "
                f"`{STOP_COMMANDS[1]}`."
            )
    return url


def _wait_for_configured(url: str, timeout_seconds: float, say: Callable[[str], None]) -> None:
    """Wait for a user-configured API that is slow to answer; fail at once if nothing listens."""
    if _healthy(url):
        return
    if _refused(url):
        raise PrefectServerError(
            f"the Prefect API at {url} (PREFECT_API_URL) refused the connection: start that "
            "server, or unset PREFECT_API_URL to let this command start a local one"
        )
    say(f"waiting up to {timeout_seconds:.0f} s for the Prefect API at {url} ...")
    if not _wait_healthy(url, timeout_seconds, alive=lambda: True):
        raise PrefectServerError(
            f"the Prefect API at {url} (PREFECT_API_URL) did not answer within "
            f"{timeout_seconds:.0f} s (LOCAL_PREFECT_START_TIMEOUT_SECONDS)"
        )


def _start(home: Path, url: str, timeout_seconds: float, say: Callable[[str], None]) -> None:
    """Start `prefect server start` detached from this process, and wait until it answers."""
    port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
    if _port_taken(port):
        raise PrefectServerError(
            f"port {port} on 127.0.0.1 is in use by something that is not a Prefect server: "
            "set LOCAL_PREFECT_PORT to a free port, or PREFECT_API_URL to a running server"
        )
    home.mkdir(parents=True, exist_ok=True)
    log = home / LOG_FILE
    fresh = not (home / "prefect.db").exists()
    say(
        f"starting a local Prefect server at {url} (log: {log}); "
        + (
            "its first start creates the database, about 20 s on an idle machine, "
            if fresh
            else "this takes a few seconds, "
        )
        + f"waiting up to {timeout_seconds:.0f} s ..."
    )
    prefect = Path(sys.executable).with_name("prefect")
    command = [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    # Its output goes to a file: a server whose output is a pipe dies at its first log line
    # once the reader exits. Analytics off: this machine's server must not phone home.
    # The UI asks the server for the API's address, which is the default port's unless told.
    env = {
        **os.environ,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_API_URL": url,
    }
    env.pop("PREFECT_API_URL", None)
    with log.open("ab") as out:
        process = subprocess.Popen(
            [*command, "--analytics-off"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives this command and its terminal's Ctrl-C
        )
    (home / PID_FILE).write_text(str(process.pid))
    started = time.monotonic()
    if not _wait_healthy(url, timeout_seconds, alive=lambda: process.poll() is None):
        if process.poll() is None:
            process.terminate()
        (home / PID_FILE).unlink(missing_ok=True)
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(empty log)"]
        raise PrefectServerError(
            f"the local Prefect server at {url} did not start within {timeout_seconds:.0f} s "
            f"(LOCAL_PREFECT_START_TIMEOUT_SECONDS); its log {log} ends: {tail[0]}"
        )
    _write_state(home, {"url": url, "pid": process.pid})
    say(f"the local Prefect server answered after {time.monotonic() - started:.0f} s")


def _remember(url: str) -> None:
    """Point the active Prefect profile at `url`, as `prefect config set PREFECT_API_URL` does."""
    from prefect.settings import PREFECT_API_URL, update_current_profile

    update_current_profile({PREFECT_API_URL: url})


def _wait_healthy(url: str, timeout_seconds: float, alive: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if _healthy(url):
            return True
        if not alive():
            return False
        time.sleep(0.5)
    return _healthy(url)


def _healthy(url: str) -> bool:
    """Whether `url` is a Prefect API that answers its health check."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=10) as response:
            status: int = response.status
            return status == 200
    except (OSError, ValueError):
        return False


def _refused(url: str) -> bool:
    """Whether nothing listens at the URL's host and port."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 80), timeout=5):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def _port_taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _read_state(home: Path) -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads((home / STATE_FILE).read_text())
        return state
    except (OSError, ValueError):
        return {}


def _write_state(home: Path, state: dict[str, Any]) -> None:
    (home / STATE_FILE).write_text(json.dumps(state))


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    """One command at a time decides whether to start the server (others wait, then reuse it)."""
    home.mkdir(parents=True, exist_ok=True)
    with (home / "ride-duration-server.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def settings_api() -> str:
    """`ensure_api` with the settings' port and start timeout, telling the user on stderr."""
    from ride_duration.core.settings import Settings

    settings = Settings.from_env()
    return ensure_api(
        port=settings.local_prefect_port,
        timeout_seconds=settings.local_prefect_start_timeout_seconds,
        say=cli.say,
    )


@contextlib.contextmanager
def prefect_api() -> Iterator[str]:
    """Run the block against a Prefect API that answers: the configured one, or a local server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = settings_api()
    with temporary_settings({PREFECT_API_URL: url}):
        yield url


def main(argv: list[str] | None = None) -> int:
    """`python -m ride_duration.orchestration.server`: make sure a Prefect API answers, print it."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m ride_duration.orchestration.server",
        description="Print the URL of the Prefect API the commands use: PREFECT_API_URL's "
        "server, else the local one, started in the background if it does not answer "
        f"(stop it with `{STOP_COMMANDS[0]}` or `{STOP_COMMANDS[1]}`).",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)
    return cli.run(lambda: print(settings_api()), debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
