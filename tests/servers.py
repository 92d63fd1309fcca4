"""Real servers for integration tests: started on 127.0.0.1, waited for, and always stopped."""

from __future__ import annotations

import contextlib
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


class CuttableProxy:
    """A TCP proxy on 127.0.0.1 to `target`, which can go down like a server whose host died.

    `cut_after(n)` arms it: once clients have sent `n` more bytes upstream, every open
    connection is dropped and new ones are refused until `restore()`.
    """

    def __init__(self, target_port: int) -> None:
        import threading

        self.target_port = target_port
        self.port = free_port()
        self.down = False
        self._budget: int | None = None
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._listener.settimeout(0.2)
        self._running = True
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut_after(self, upstream_bytes: int) -> None:
        with self._lock:
            self._budget = upstream_bytes

    def restore(self) -> None:
        with self._lock:
            self.down, self._budget = False, None

    def close(self) -> None:
        self._running = False
        self._thread.join(timeout=5)
        self._listener.close()
        self._drop_all()

    def _accept(self) -> None:
        import threading

        while self._running:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.down:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, counted: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if counted and self._spend(len(chunk)):
                    self._drop_all()
                    return
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def _spend(self, size: int) -> bool:
        with self._lock:
            if self._budget is None:
                return False
            self._budget -= size
            if self._budget <= 0:
                self.down, self._budget = True, None
            return self.down

    def _drop_all(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
