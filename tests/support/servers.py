"""Real servers for integration tests: started on 127.0.0.1, waited for, and always stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_REFUSING: list[socket.socket] = []  # held open until the test process ends


def refused_url() -> str:
    """An http URL on 127.0.0.1 that refuses connections for the rest of the test process.

    Its port stays bound and never listens, so a server started later (moto, gunicorn, a
    Prefect server) cannot be given it, as it can a port `free_port` has let go of."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    _REFUSING.append(sock)
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


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


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `check` every 0.1 s until true; fail saying `what` was awaited after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.1)


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


@contextmanager
def moto_s3(log: Path) -> Iterator[dict[str, str]]:
    """A moto S3 server of the caller's own, and the environment that points at it, set in
    this process while the block runs (its requests are logged to `log`)."""
    port = free_port()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }
    with (
        running(
            [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            env={**os.environ, **env},
            ready=http_ok(f"http://127.0.0.1:{port}/moto-api/"),
            log=log,
        ),
        pytest.MonkeyPatch.context() as patch,
    ):
        for name, value in env.items():
            patch.setenv(name, value)
        yield env


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


class RefusingKinesis:
    """An HTTP proxy on 127.0.0.1 to a Kinesis server that refuses or holds PutRecords calls.

    `refuse(partition_key)` says, per entry, how many more times to refuse it. A refused entry
    is taken out of the request before it is forwarded (so it is not written) and comes back
    with an ErrorCode, as Kinesis answers an entry it throttled; everything else passes as is.
    `throttled_reads = n` answers the next n GetRecords calls as a throttled shard does.
    `hold_after(n)` lets n PutRecords calls through and holds the next ones unanswered (`held`
    is set when one waits) until `release()`, which drops them: a writer stuck mid-stream.
    """

    def __init__(self, target: str) -> None:
        import json
        import threading
        import urllib.parse
        from http.client import HTTPConnection
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        parsed = urllib.parse.urlsplit(target)
        self.refusals: dict[str, int] = {}
        self.refused: list[str] = []
        self.puts_before_hold: int | None = None
        self.throttled_reads = 0  # GetRecords calls answered "rate exceeded" first
        self.held = threading.Event()
        self._released = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                target_name = self.headers.get("X-Amz-Target", "")
                refused: set[int] = set()
                if target_name.endswith(".PutRecords") and proxy._hold():
                    self.close_connection = True
                    return
                if target_name.endswith(".GetRecords") and proxy.throttled_reads > 0:
                    proxy.throttled_reads -= 1
                    answer = json.dumps(
                        {
                            "__type": "ProvisionedThroughputExceededException",
                            "message": "Rate exceeded for shard",
                        }
                    ).encode()
                    self.send_response(400)
                    self.send_header("Content-Type", "application/x-amz-json-1.1")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                    return
                if target_name.endswith(".PutRecords"):
                    request = json.loads(body)
                    refused = proxy._choose(request["Records"])
                    kept = [r for i, r in enumerate(request["Records"]) if i not in refused]
                    body = json.dumps({**request, "Records": kept}).encode()
                headers = {k: v for k, v in self.headers.items() if k.lower() != "content-length"}
                upstream = HTTPConnection(parsed.hostname, parsed.port, timeout=30)
                upstream.request("POST", self.path, body=body, headers=headers)
                response = upstream.getresponse()
                answer = response.read()
                if refused and response.status == 200:
                    answer = proxy._merge(json.loads(answer), refused)
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def refuse(self, partition_key: str, times: int) -> None:
        self.refusals[partition_key] = times

    def hold_after(self, puts: int) -> None:
        self.puts_before_hold = puts

    def release(self) -> None:
        self._released.set()

    def _hold(self) -> bool:
        """Whether this PutRecords call is held (then dropped once released)."""
        if self.puts_before_hold is None:
            return False
        if self.puts_before_hold > 0:
            self.puts_before_hold -= 1
            return False
        self.held.set()
        self._released.wait(timeout=120)
        return True

    def close(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()

    def _choose(self, records: list[dict]) -> set[int]:
        chosen = set()
        for i, record in enumerate(records):
            key = record["PartitionKey"]
            if self.refusals.get(key, 0) > 0:
                self.refusals[key] -= 1
                self.refused.append(key)
                chosen.add(i)
        return chosen

    def _merge(self, answer: dict, refused: set[int]) -> bytes:
        import json

        forwarded = iter(answer["Records"])
        total = len(answer["Records"]) + len(refused)
        results = [
            {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded"}
            if i in refused
            else next(forwarded)
            for i in range(total)
        ]
        failed = sum(1 for r in results if "ErrorCode" in r)
        return json.dumps({**answer, "FailedRecordCount": failed, "Records": results}).encode()
