"""Real servers for integration tests: started on 127.0.0.1, waited for, and always stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_ok(url: str) -> Callable[[], bool]:
    """A readiness check: `url` answers 2xx."""

    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return 200 <= response.status < 300
        except OSError:
            return False

    return check


def wait_until_ready(
    ready: Callable[[], bool], process: subprocess.Popen, timeout: float, log: Path
) -> None:
    """Poll `ready` until true; fail with the process's log if it dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        if ready():
            return
        time.sleep(0.3)
    raise TimeoutError(f"not ready after {timeout}s:\n{log.read_text()[-3000:]}")


@contextmanager
def running(
    command: list[str],
    *,
    env: dict[str, str],
    ready: Callable[[], bool],
    log: Path,
    timeout: float = 60,
    cwd: Path | None = None,
) -> Iterator[subprocess.Popen]:
    """Run `command` in its own process group until the block ends, then stop the whole group."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_until_ready(ready, process, timeout, log)
            yield process
        finally:
            stop(process)


def stop(process: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after `grace` seconds."""
    if process.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace / 2)
            return
        except subprocess.TimeoutExpired:
            continue
