"""A local AWS Lambda Runtime API, so tests run a handler through `awslambdaric` as AWS runs it.

AWS's runtime interface client (`python -m awslambdaric module.function`) long-polls the
Runtime API named by `AWS_LAMBDA_RUNTIME_API` for the next event, calls the handler with it and
posts the result or the error back. `LambdaRuntime` is that API on 127.0.0.1, cut to what the
tests use: `next`, `response`, `error` (and `init/error`), invocations one at a time, and
timeouts; `run_function` starts the client in a process of its own.

    with LambdaRuntime() as runtime, run_function(runtime, "lambda_function.lambda_handler",
                                                  cwd=task_root, log=tmp_path / "function.log"):
        result = runtime.invoke({"Records": []}, timeout=10)
        assert result.error is None, result.error

What the client requires (awslambdaric 4.x): `next` must block until an event comes (any
non-2xx answer makes it exit); `Lambda-Runtime-Deadline-Ms` is epoch milliseconds; the event's
Content-Type is exactly `application/json`; posts are answered 202; an error post carries the
X-Ray cause as a header of up to 1 MiB, longer than `http.server` reads by default.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.support.servers import stop

API = "/2018-06-01/runtime"
# Lambda's own variables: never passed on from the caller's environment by accident
# (AWS_LAMBDA_MAX_CONCURRENCY, for one, switches the client to multi-concurrent mode).
LAMBDA_OWNED_PREFIXES = ("AWS_LAMBDA_", "_LAMBDA_", "_X_AMZN_TRACE_ID", "AWS_EXECUTION_ENV")


class LambdaRuntimeError(Exception):
    """The function could not be invoked."""


class InvocationTimeout(LambdaRuntimeError, TimeoutError):
    """No answer within the timeout: Lambda's "Task timed out"."""


class FunctionExited(LambdaRuntimeError):
    """The function's process ended."""


class InitError(LambdaRuntimeError):
    """The function posted an init error (its module or handler did not load)."""


@dataclass
class Invocation:
    """One invocation: its event, and the function's response or error document."""

    request_id: str
    payload: bytes
    timeout: float
    response: Any = None
    error: dict[str, Any] | None = None
    answered: threading.Event = field(default_factory=threading.Event)

    @property
    def ok(self) -> bool:
        """Whether the function posted a response rather than an error."""
        return self.error is None


class LambdaRuntime:
    """The Runtime API of one execution environment, served on a free port of 127.0.0.1."""

    def __init__(self, init_timeout: float = 60.0) -> None:
        self.init_timeout = init_timeout
        self.init_error: dict[str, Any] | None = None
        self.init_error_type: str | None = None  # e.g. Runtime.ImportModuleError
        self._events: queue.Queue[Invocation | None] = queue.Queue()
        self._invocations: dict[str, Invocation] = {}
        self._polled = threading.Event()
        self._invoke_lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        # The X-Ray cause header of an error post can reach 1 MiB; http.client reads 64 KiB.
        http.client._MAXLINE = max(http.client._MAXLINE, (1 << 20) + 1024)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.runtime = self  # type: ignore[attr-defined]

    def __enter__(self) -> LambdaRuntime:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._events.put(None)  # a function still polling gets 500 and exits
        self._server.shutdown()
        self._server.server_close()

    @property
    def address(self) -> str:
        """`host:port` of the API, the value of `AWS_LAMBDA_RUNTIME_API`."""
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    def environment(self, handler: str, task_root: Path) -> dict[str, str]:
        """The variables Lambda sets for a function, pointing at this API (no credentials)."""
        return {
            "AWS_LAMBDA_RUNTIME_API": self.address,
            "_HANDLER": handler,
            "LAMBDA_TASK_ROOT": str(task_root),
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_LAMBDA_FUNCTION_NAME": "ride-duration-stream",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
            "TZ": ":UTC",
        }

    def wait_until_ready(self) -> None:
        """Wait until the function asks for its first event; InitError or FunctionExited else."""
        self._wait(self._polled, self.init_timeout, "asked for its first event")

    def invoke(self, event: Any, timeout: float = 30) -> Invocation:
        """Invoke the function with `event` and wait for its answer, at most `timeout` seconds.

        A timeout stops the function's process (Lambda resets such an environment) and raises
        InvocationTimeout; an init error raises InitError, a dead process FunctionExited.
        """
        invocation = Invocation(str(uuid.uuid4()), json.dumps(event).encode(), timeout)
        with self._invoke_lock:
            self._invocations[invocation.request_id] = invocation
            self._events.put(invocation)
            try:
                self._wait(invocation.answered, timeout, "answered")
            except InvocationTimeout:
                if self._process is not None:
                    stop(self._process, grace=5)
                raise
        return invocation

    def _wait(self, done: threading.Event, seconds: float, what: str) -> None:
        limit = time.monotonic() + seconds
        while not done.wait(0.05):
            if self.init_error is not None:
                document = self.init_error
                raise InitError(
                    f"{self.init_error_type or document.get('errorType')}: "
                    f"{document.get('errorMessage')}"
                )
            if self._process is not None and self._process.poll() is not None:
                raise FunctionExited(f"the function exited ({self._process.returncode})")
            if time.monotonic() > limit:
                raise InvocationTimeout(f"the function has not {what} within {seconds:g} s")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ThreadingHTTPServer

    @property
    def runtime(self) -> LambdaRuntime:
        return self.server.runtime  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        if self.path != f"{API}/invocation/next":
            return self._reply(404, {"errorType": "NotFound"})
        self.runtime._polled.set()
        invocation = self.runtime._events.get()
        if invocation is None:
            return self._reply(500, {"errorType": "RuntimeClosed"})
        deadline = int((time.time() + invocation.timeout) * 1000)
        self._send(
            200,
            invocation.payload,
            {
                "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                "Lambda-Runtime-Deadline-Ms": str(deadline),
                "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:123456789012:"
                "function:ride-duration-stream",
                "Lambda-Runtime-Trace-Id": f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]}",
            },
        )

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == f"{API}/init/error":
            self.runtime.init_error_type = self.headers.get("Lambda-Runtime-Function-Error-Type")
            self.runtime.init_error = json.loads(body or b"{}")
            return self._reply(202, {"status": "OK"})
        prefix, _, action = self.path.rpartition("/")
        invocation = self.runtime._invocations.get(prefix.removeprefix(f"{API}/invocation/"))
        if invocation is None or action not in ("response", "error"):
            return self._reply(404, {"errorType": "NotFound"})
        if action == "response":
            invocation.response = json.loads(body) if body else None
        else:
            invocation.error = json.loads(body or b"{}")
        invocation.answered.set()
        self._reply(202, {"status": "OK"})

    def _reply(self, status: int, document: dict[str, str]) -> None:
        self._send(status, json.dumps(document).encode(), {})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the function's own log says what happened."""


@contextmanager
def run_function(
    runtime: LambdaRuntime,
    handler: str,
    *,
    cwd: Path,
    log: Path,
    env: Mapping[str, str] | None = None,
    python: str | Path = sys.executable,
    ready: bool = True,
    inherited: Mapping[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `python -m awslambdaric handler` against `runtime` until the block ends.

    The process runs in `cwd` (the task root) with `inherited` (default: this process's
    environment) minus Lambda's own variables, plus `runtime.environment(...)`, plus `env`;
    its output goes to `log`. With `ready`, the block starts once the function asked for its
    first event. Its process group is always stopped (`tests.support.servers.stop`).
    """
    cwd = Path(cwd).resolve()  # LAMBDA_TASK_ROOT is absolute, as /var/task is
    source = os.environ if inherited is None else inherited
    environment = {k: v for k, v in source.items() if not k.startswith(LAMBDA_OWNED_PREFIXES)}
    environment |= runtime.environment(handler, cwd) | dict(env or {})
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(python), "-m", "awslambdaric", handler],
            cwd=cwd,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stopping it stops anything it started
        )
    runtime._process = process
    try:
        if ready:
            runtime.wait_until_ready()
        yield process
    finally:
        runtime._process = None
        stop(process, grace=5)
