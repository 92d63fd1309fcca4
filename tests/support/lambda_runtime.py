"""A local AWS Lambda Runtime API, so tests run a handler through `awslambdaric` as AWS runs it.

AWS's runtime interface client (`python -m awslambdaric module.function`) long-polls the
Runtime API named by `AWS_LAMBDA_RUNTIME_API` for the next event, calls the handler with it and
a context, and posts the result back. `LambdaRuntime` is that API, on 127.0.0.1: one execution
environment that serves invocations in order, one at a time; `run_function` starts the client
in a process of its own, with the environment variables Lambda sets.

    with LambdaRuntime() as runtime, run_function(runtime, "lambda_function.lambda_handler",
                                                  cwd=task_root, log=tmp_path / "function.log"):
        result = runtime.invoke({"Records": []}, timeout=10)
        assert result.error is None, result.error
        assert result.response == {"batchItemFailures": []}

What the client requires of the API (awslambdaric 4.x, which wraps aws-lambda-cpp and curl):

- `GET /2018-06-01/runtime/invocation/next` has no client-side timeout: it blocks until an event
  comes. Any non-2xx answer, or a missing `Lambda-Runtime-Aws-Request-Id`, makes the client
  raise and exit, so it must simply wait.
- `Lambda-Runtime-Deadline-Ms` is epoch milliseconds; without it the remaining time is 0.
- `AWS_LAMBDA_MAX_CONCURRENCY` in the function's environment switches the client to Lambda
  Managed Instances' multi-concurrent mode, so `run_function` never passes it on by accident.
- Response and error posts must be answered 2xx (AWS answers 202): any other status makes the
  client raise and exit. Init errors are posted by Python code that wants 202 exactly.
- The event's `Content-Type` must be exactly `application/json` (not even with `; charset=`),
  or the handler is called with the raw bytes.
- Invocation errors carry no `Lambda-Runtime-Function-Error-Type` header (only init errors do):
  the type is the error document's `errorType`. They carry the X-Ray cause instead, as a header
  of up to 1 MiB, so this server accepts header lines longer than `http.server`'s 64 KiB.
"""

from __future__ import annotations

import email.parser
import http.client
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.support.servers import stop

API_PREFIX = "/2018-06-01/runtime"
# The payload limit of a synchronous invocation: Lambda answers a bigger response with 413.
MAX_RESPONSE_BYTES = 6 * 1024 * 1024
# awslambdaric cuts the X-Ray cause header at 1 MiB; leave room for the name and CRLF.
MAX_HEADER_LINE = 1024 * 1024 + 1024
MAX_HEADERS = 100
# Environment variables that switch awslambdaric into another mode (multi-concurrency, framed
# telemetry logs, SnapStart, thread polling, ...) or belong to one invocation: a test process
# that happens to have them must not hand them to the function.
LAMBDA_OWNED_PREFIXES = ("AWS_LAMBDA_", "_LAMBDA_", "_X_AMZN_TRACE_ID", "AWS_EXECUTION_ENV")


class LambdaRuntimeError(Exception):
    """An invocation could not be completed by the function."""


class InvocationTimeout(LambdaRuntimeError, TimeoutError):
    """The function did not take up, or did not answer, an invocation in time."""


class FunctionExited(LambdaRuntimeError):
    """The function's process ended while it was expected to serve invocations."""


class InitError(LambdaRuntimeError):
    """The function posted an init error: its handler could not be imported or initialised."""

    def __init__(self, message: str, document: dict[str, Any], error_type: str | None) -> None:
        super().__init__(message)
        self.document = document
        self.error_type = error_type


@dataclass(frozen=True)
class Invocation:
    """The outcome of one invocation, as the function posted it.

    `response` is the handler's result parsed from JSON (raw bytes when the handler returned
    bytes, which awslambdaric posts as `application/unknown`); `error` is the posted error
    document (`errorType`, `errorMessage`, `stackTrace`, `requestId`), None on success.
    `error_type` is the `Lambda-Runtime-Function-Error-Type` header, which awslambdaric does not
    send for invocation errors. `elapsed` counts seconds from `invoke` to the answer (a cold
    start included); `deadline_ms` is the deadline the function was given; `body`,
    `content_type` and `headers` (lower-case names) are the function's post as it came.
    """

    request_id: str
    response: Any
    error: dict[str, Any] | None
    error_type: str | None
    elapsed: float
    deadline_ms: int
    body: bytes
    content_type: str | None
    headers: dict[str, str]

    @property
    def ok(self) -> bool:
        """Whether the function posted a response rather than an error."""
        return self.error is None


@dataclass
class _Pending:
    """An invocation on its way: queued, then delivered by `next`, then answered."""

    request_id: str
    payload: bytes
    timeout: float
    deadline_ms: int | None
    trace_id: str
    client_context: str | None
    cognito_identity: str | None
    queued_at: float = field(default_factory=time.monotonic)
    delivered_at: float | None = None
    delivered_deadline_ms: int = 0
    outcome: str | None = None  # "response" or "error", once answered
    outcome_pending: str | None = None  # the same, while the reply to the function is sent
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    answered_at: float = 0.0


class LambdaRuntime:
    """The Lambda Runtime API of one execution environment, served on 127.0.0.1.

    Use it as a context manager (or `start()` / `close()`), point a function at `address`
    (`run_function` does), then `invoke` it. Requests the server answered are listed in
    `requests` as (method, path, status).
    """

    def __init__(
        self,
        *,
        function_name: str = "ride-duration-stream",
        region: str = "us-east-1",
        account_id: str = "123456789012",
        memory_mb: int = 128,
        version: str = "$LATEST",
        init_timeout: float = 60.0,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self.function_name = function_name
        self.region = region
        self.account_id = account_id
        self.memory_mb = memory_mb
        self.version = version
        self.init_timeout = init_timeout
        self.max_response_bytes = max_response_bytes
        self.requests: list[tuple[str, str, int]] = []
        self._cond = threading.Condition()
        self._invoke_lock = threading.Lock()
        self._queue: deque[_Pending] = deque()
        self._current: _Pending | None = None
        self._closing = False
        self._polled = False
        self._init_error: dict[str, Any] | None = None
        self._init_error_type: str | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Path | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> LambdaRuntime:
        """Listen on a free port of 127.0.0.1 and serve in a daemon thread."""
        if self._server is not None:
            return self
        self._closing = False
        # Port 0: the kernel picks a free port, so parallel test sessions cannot collide.
        self._server = _Server(("127.0.0.1", 0), _Handler, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"lambda-runtime-{self.address}",
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving; a function still polling `next` gets 500 and exits, as after a reset."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> LambdaRuntime:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- what a function needs ---------------------------------------------------------------

    @property
    def address(self) -> str:
        """`host:port` of the API, the value of `AWS_LAMBDA_RUNTIME_API`."""
        if self._server is None:
            raise RuntimeError("the Lambda runtime is not started")
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    @property
    def function_arn(self) -> str:
        """The ARN sent as `Lambda-Runtime-Invoked-Function-Arn`."""
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}"

    def environment(self, handler: str, task_root: Path) -> dict[str, str]:
        """The variables Lambda sets for a function, pointing at this API.

        No credentials: a function that calls AWS (or moto) gets them from the caller's `env`.
        `AWS_EXECUTION_ENV` is left unset, as for a container image; setting it to
        `AWS_Lambda_python3.12` or later changes how awslambdaric polls and encodes JSON.
        """
        stream = f"{time.strftime('%Y/%m/%d')}/[{self.version}]{uuid.uuid4().hex}"
        return {
            "AWS_LAMBDA_RUNTIME_API": self.address,
            "_HANDLER": handler,
            "LAMBDA_TASK_ROOT": str(task_root),
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_LAMBDA_FUNCTION_NAME": self.function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": self.version,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.function_name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": stream,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "TZ": ":UTC",
        }

    def attach(self, process: subprocess.Popen[bytes], log: Path | None = None) -> None:
        """Watch `process` as this environment's function: its death fails invocations at once.

        A new process is a new environment: a previous init error and readiness are forgotten.
        """
        with self._cond:
            self._process, self._log = process, log
            self._polled, self._init_error, self._init_error_type = False, None, None
            self._cond.notify_all()

    def detach(self, process: subprocess.Popen[bytes]) -> None:
        """Stop watching `process` (if it is the one attached)."""
        with self._cond:
            if self._process is process:
                self._process = None

    @property
    def init_error(self) -> dict[str, Any] | None:
        """The document the function posted to `/runtime/init/error`, if it did."""
        with self._cond:
            return self._init_error

    @property
    def init_error_type(self) -> str | None:
        """The `Lambda-Runtime-Function-Error-Type` of the init error, such as
        `Runtime.ImportModuleError`."""
        with self._cond:
            return self._init_error_type

    def wait_until_ready(self, timeout: float | None = None) -> None:
        """Wait until the function has initialised, that is asked for its first invocation.

        Raises `InitError` if it posted an init error, `FunctionExited` if its process ended,
        `InvocationTimeout` after `timeout` seconds (default: `init_timeout`).
        """
        seconds = self.init_timeout if timeout is None else timeout
        limit = time.monotonic() + seconds
        with self._cond:
            while not self._polled:
                self._raise_if_unusable("before its first invocation")
                if time.monotonic() > limit:
                    raise InvocationTimeout(
                        f"the function did not ask for an invocation within {seconds:g} s "
                        f"of its start{self._log_hint()}"
                    )
                self._cond.wait(0.05)

    # -- invoking --------------------------------------------------------------------------

    def invoke(
        self,
        event: Any,
        timeout: float = 30,
        deadline_ms: int | None = None,
        *,
        client_context: Mapping[str, Any] | None = None,
        cognito_identity: Mapping[str, Any] | None = None,
    ) -> Invocation:
        """Invoke the function with `event` (any JSON value) and wait for its answer.

        `timeout` is the function's timeout in seconds, counted once the function has taken the
        event; `deadline_ms` (epoch milliseconds) overrides the deadline the function sees,
        which is otherwise that moment plus `timeout`. Waiting for the function to take the
        event (a cold start) is bounded by `init_timeout`. Invocations are served one at a
        time, in call order.

        A timeout raises `InvocationTimeout` and, as Lambda resets an environment whose
        invocation timed out, stops the attached process. An init error raises `InitError`;
        the end of the attached process raises `FunctionExited`.
        """
        if self._server is None:
            raise RuntimeError("the Lambda runtime is not started")
        pending = _Pending(
            request_id=str(uuid.uuid4()),
            payload=json.dumps(event).encode(),
            timeout=timeout,
            deadline_ms=deadline_ms,
            trace_id=_trace_id(),
            client_context=None if client_context is None else json.dumps(client_context),
            cognito_identity=None if cognito_identity is None else json.dumps(cognito_identity),
        )
        with self._invoke_lock:
            timed_out = self._run(pending)
            if timed_out:
                process = self._process
                if process is not None:
                    # Lambda ends an environment whose invocation timed out; a late answer
                    # would be refused anyway, and the next invocation needs a fresh process.
                    stop(process, grace=5)
                raise InvocationTimeout(
                    f"invocation {pending.request_id} got no answer within {timeout:g} s "
                    f"(Lambda would report 'Task timed out')"
                    + ("; the function's process was stopped" if process is not None else "")
                    + self._log_hint()
                )
        return _outcome(pending)

    def _run(self, pending: _Pending) -> bool:
        """Queue `pending` and wait for its answer; True when the function's timeout passed."""
        with self._cond:
            self._raise_if_unusable(f"before invocation {pending.request_id}")
            self._queue.append(pending)
            self._cond.notify_all()
            try:
                while pending.outcome is None:
                    self._raise_if_unusable(f"during invocation {pending.request_id}")
                    now = time.monotonic()
                    if pending.delivered_at is None:
                        if now - pending.queued_at > self.init_timeout:
                            raise InvocationTimeout(
                                f"the function did not take invocation {pending.request_id} "
                                f"within {self.init_timeout:g} s (still initialising, or not "
                                f"polling {self.address}?){self._log_hint()}"
                            )
                    elif (
                        pending.outcome_pending is None
                        and now - pending.delivered_at > pending.timeout
                    ):
                        return True
                    self._cond.wait(0.05)
                return False
            finally:
                # Whatever happened, this invocation is over: a late answer gets 400.
                if pending in self._queue:
                    self._queue.remove(pending)
                if self._current is pending:
                    self._current = None

    def _raise_if_unusable(self, when: str) -> None:
        """Raise if the environment can serve nothing more. Call with `_cond` held."""
        if self._closing:
            raise LambdaRuntimeError(f"the Lambda runtime was closed {when}")
        if self._init_error is not None:
            document = self._init_error
            raise InitError(
                f"the function failed to initialise ({when}): "
                f"{document.get('errorType')}: {document.get('errorMessage')}{self._log_hint()}",
                document,
                self._init_error_type,
            )
        process = self._process
        if process is not None and process.poll() is not None:
            raise FunctionExited(
                f"the function's process {process.pid} exited with code {process.returncode} "
                f"{when}{self._log_hint()}"
            )

    def _log_hint(self) -> str:
        if self._log is None:
            return " (no log: the function was not started by run_function)"
        try:
            tail = self._log.read_text(errors="replace")[-4000:]
        except OSError:
            tail = ""
        return f"; the function's log is {self._log}, ending with:\n{tail}"

    # -- called by the HTTP handler ------------------------------------------------------------

    def _take_next(self, sock: socket.socket) -> _Pending | str:
        """Block until an invocation is queued; "closing" or "gone" when there is none to give."""
        with self._cond:
            self._polled = True
            self._cond.notify_all()
            while True:
                if self._closing:
                    return "closing"
                # A poller whose process died would swallow the next event: drop it instead.
                if _peer_gone(sock):
                    return "gone"
                if self._queue:
                    pending = self._queue.popleft()
                    pending.delivered_at = time.monotonic()
                    pending.delivered_deadline_ms = pending.deadline_ms or int(
                        (time.time() + pending.timeout) * 1000
                    )
                    self._current = pending
                    return pending
                self._cond.wait(0.2)

    def _requeue(self, pending: _Pending) -> None:
        """Give back an invocation whose delivery failed: the function never saw it."""
        with self._cond:
            if self._current is pending:
                self._current = None
                pending.delivered_at = None
                self._queue.appendleft(pending)
                self._cond.notify_all()

    def _answer(
        self, request_id: str, outcome: str, body: bytes, headers: dict[str, str]
    ) -> tuple[HTTPStatus, dict[str, str], _Pending | None]:
        """Take the function's response or error for `request_id`: the status to reply, and
        the invocation to `_finish` once the reply is sent (None when refused)."""
        with self._cond:
            pending = self._current
            if pending is None or pending.request_id != request_id:
                return (
                    HTTPStatus.BAD_REQUEST,
                    {
                        "errorMessage": f"Invalid request ID: {request_id} is not in progress",
                        "errorType": "InvalidRequestID",
                    },
                    None,
                )
            status, reply = HTTPStatus.ACCEPTED, {"status": "OK"}
            if outcome == "response" and len(body) > self.max_response_bytes:
                message = (
                    f"Response payload size ({len(body)} bytes) exceeded maximum allowed "
                    f"payload size ({self.max_response_bytes} bytes)."
                )
                reply = {"errorMessage": message, "errorType": "RequestEntityTooLarge"}
                status, outcome = HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "error"
                body = json.dumps(
                    {"errorMessage": message, "errorType": "Function.ResponseSizeTooLarge"}
                ).encode()
                headers = {"content-type": "application/json"}
            pending.body, pending.headers = body, headers
            pending.answered_at = time.monotonic()
            # Taken: a second answer for it is refused from now on.
            self._current = None
            pending.outcome_pending = outcome
            return status, reply, pending

    def _finish(self, pending: _Pending) -> None:
        """Complete an answered invocation. Called after the reply is sent, so that `invoke`
        returns only once the function got its 202 and moves on to its next poll."""
        with self._cond:
            pending.outcome = pending.outcome_pending
            self._cond.notify_all()

    def _record_init_error(self, body: bytes, error_type: str | None) -> None:
        with self._cond:
            self._init_error = _parse_error(body)
            self._init_error_type = error_type
            self._cond.notify_all()


def _outcome(pending: _Pending) -> Invocation:
    content_type = pending.headers.get("content-type")
    response: Any = None
    error: dict[str, Any] | None = None
    if pending.outcome == "error":
        error = _parse_error(pending.body)
    elif content_type is None or content_type.startswith("application/json"):
        response = json.loads(pending.body) if pending.body else None
    else:
        response = pending.body
    return Invocation(
        request_id=pending.request_id,
        response=response,
        error=error,
        error_type=pending.headers.get("lambda-runtime-function-error-type"),
        elapsed=pending.answered_at - pending.queued_at,
        deadline_ms=pending.delivered_deadline_ms,
        body=pending.body,
        content_type=content_type,
        headers=pending.headers,
    )


def _parse_error(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if isinstance(document, dict):
        return document
    # Not the documented shape: keep what came, under the names a test would look for.
    return {"errorType": "", "errorMessage": body.decode(errors="replace")}


def _trace_id() -> str:
    """An X-Ray trace header, as Lambda sends it (awslambdaric sets `_X_AMZN_TRACE_ID` to it)."""
    return (
        f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};"
        f"Parent={uuid.uuid4().hex[:16]};Sampled=0"
    )


def _peer_gone(sock: socket.socket) -> bool:
    """Whether the client closed `sock` (readable, yet nothing to read)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], handler: type[_Handler], runtime: LambdaRuntime
    ) -> None:
        self.runtime = runtime
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A function stopped mid-exchange resets its connection: expected, not worth a trace.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1: curl in awslambdaric keeps one connection for `next` and the posts.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in one write, and without Nagle's delay: otherwise each
    # exchange with curl waits ~40 ms for a delayed ACK.
    disable_nagle_algorithm = True
    server: _Server

    def parse_request(self) -> bool:
        """Parse the request line and headers, allowing the 1 MiB X-Ray cause header.

        `BaseHTTPRequestHandler` refuses header lines over 64 KiB with 431, and a deep
        traceback's X-Ray cause is longer: awslambdaric would then crash on its own error.
        """
        # What send_error needs until the request line is parsed.
        self.command, self.request_version = "", "HTTP/1.0"
        self.close_connection = True
        words = self.raw_requestline.decode("iso-8859-1").rstrip("\r\n").split()
        if len(words) != 3 or not words[2].startswith("HTTP/1."):
            self.send_error(HTTPStatus.BAD_REQUEST, "Bad request line")
            return False
        self.command, self.path, self.request_version = words
        self.requestline = " ".join(words)
        lines = []
        while True:
            line = self.rfile.readline(MAX_HEADER_LINE + 1)
            if len(line) > MAX_HEADER_LINE or len(lines) > MAX_HEADERS:
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
                return False
            if line in (b"\r\n", b"\n", b""):
                break
            lines.append(line.decode("iso-8859-1"))
        self.headers = email.parser.Parser(_class=http.client.HTTPMessage).parsestr("".join(lines))
        connection = self.headers.get("Connection", "").lower()
        self.close_connection = connection == "close" or (
            self.request_version == "HTTP/1.0" and connection != "keep-alive"
        )
        if self.headers.get("Expect", "").lower() == "100-continue":
            return self.handle_expect_100()
        return True

    def do_GET(self) -> None:
        if self.path != f"{API_PREFIX}/invocation/next":
            self._reply(HTTPStatus.NOT_FOUND, _not_found(self.path))
            return
        pending = self.server.runtime._take_next(self.connection)
        if pending == "gone":
            self.close_connection = True
            return
        if pending == "closing":
            self.close_connection = True
            reply = {"errorMessage": "the runtime is shutting down", "errorType": "Shutdown"}
            self._reply(HTTPStatus.INTERNAL_SERVER_ERROR, reply)
            return
        assert isinstance(pending, _Pending)
        headers = {
            "Lambda-Runtime-Aws-Request-Id": pending.request_id,
            "Lambda-Runtime-Deadline-Ms": str(pending.delivered_deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": self.server.runtime.function_arn,
            "Lambda-Runtime-Trace-Id": pending.trace_id,
        }
        if pending.client_context is not None:
            headers["Lambda-Runtime-Client-Context"] = pending.client_context
        if pending.cognito_identity is not None:
            headers["Lambda-Runtime-Cognito-Identity"] = pending.cognito_identity
        try:
            self._send(HTTPStatus.OK, pending.payload, headers)
        except OSError:
            # The function went away between asking and receiving: it never saw the event.
            self.server.runtime._requeue(pending)
            self.close_connection = True

    def do_POST(self) -> None:
        body = self._read_body()
        if body is None:
            return
        runtime = self.server.runtime
        parts = self.path.removeprefix(API_PREFIX).strip("/").split("/")
        headers = {name.lower(): value for name, value in self.headers.items()}
        if parts == ["init", "error"]:
            runtime._record_init_error(body, headers.get("lambda-runtime-function-error-type"))
            self._reply(HTTPStatus.ACCEPTED, {"status": "OK"})
        elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
            status, reply, pending = runtime._answer(parts[1], parts[2], body, headers)
            try:
                self._reply(status, reply)
            except OSError:
                self.close_connection = True  # the function died or timed out meanwhile
            finally:
                if pending is not None:
                    runtime._finish(pending)
        else:
            self._reply(HTTPStatus.NOT_FOUND, _not_found(self.path))

    def _read_body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            # awslambdaric always sends Content-Length (it disables chunked encoding).
            self.close_connection = True
            self._reply(HTTPStatus.LENGTH_REQUIRED, {"errorMessage": "Content-Length required"})
            return None
        return self.rfile.read(int(length))

    def _reply(self, status: HTTPStatus, document: dict[str, str]) -> None:
        self._send(status, json.dumps(document).encode(), {})

    def _send(self, status: HTTPStatus, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        for name, value in headers.items():
            self.send_header(name, value)
        # What end_headers would flush, sent with the body.
        self._headers_buffer.append(b"\r\n")
        self.wfile.write(b"".join(self._headers_buffer) + body)
        self._headers_buffer = []
        self.wfile.flush()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self.server.runtime.requests.append((self.command, self.path, int(code)))

    def log_message(self, format: str, *args: Any) -> None:
        # Keep the test output clean: `requests` records what was served.
        pass


def _not_found(path: str) -> dict[str, str]:
    return {"errorMessage": f"no such Runtime API endpoint: {path}", "errorType": "NotFound"}


def lambda_environment(inherited: Mapping[str, str] | None = None) -> dict[str, str]:
    """`inherited` (default: this process's environment) without the variables Lambda owns."""
    source = os.environ if inherited is None else inherited
    return {k: v for k, v in source.items() if not k.startswith(LAMBDA_OWNED_PREFIXES)}


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

    The process runs in `cwd` (the task root, from which the handler module is imported), with
    `inherited` (default: this process's environment) minus Lambda's own variables, plus
    `runtime.environment(...)`, plus `env`; its stdout and stderr go to `log`. It is attached to
    `runtime`, so invocations fail at once if it dies. With `ready`, the block starts once the
    function has initialised (`InitError` if it could not). It runs in its own process group,
    which is always stopped: SIGTERM, then SIGKILL within 5 seconds (`tests.support.servers.stop`).
    """
    cwd = Path(cwd).resolve()  # LAMBDA_TASK_ROOT is absolute, as /var/task is
    environment = lambda_environment(inherited)
    environment.update(runtime.environment(handler, cwd))
    environment.update(env or {})
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
    try:
        runtime.attach(process, log)
        if ready:
            runtime.wait_until_ready()
        yield process
    finally:
        runtime.detach(process)
        stop(process, grace=5)
