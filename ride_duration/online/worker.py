"""gunicorn's threaded worker, made safe from slow and lying clients: whole requests first.

gunicorn's gthread worker hands a connection to a thread as soon as its first bytes arrive, and
the thread then waits, without a limit, for the rest: a client that trickles its headers or
sends less body than its Content-Length holds the thread, and a handful of them hold them all,
so that even /health stops answering. This worker reads each request in its event loop
instead, without blocking, as a buffering proxy does, and gives it to a thread only once it is
whole: its headers, and its body by Content-Length or chunks. A client then has
WEB_CLIENT_TIMEOUT_SECONDS to send its request (else 408) and as long to take its answer; a
request whose headers or body are too large is refused before it is read (431, 413). Threads
only ever run requests that are already there.

**Draining.** gunicorn's master, stopped by SIGTERM, closes its listening sockets and sends
SIGTERM to each worker; gthread would then stop accepting at once. This worker drains instead:
it tells the app (`/ready` answers 503 from then on, so a load balancer sends no more) and keeps
accepting on its own copies of the sockets, answering with `Connection: close`, for
WEB_DRAIN_SECONDS; then it stops accepting, refuses the requests still arriving (503), closes
idle connections, lets the requests in flight finish and exits. The master waits
`graceful_timeout` (gunicorn.conf.py: the drain and 5 s) before it kills what is left.

Every answer of the worker itself carries the headers of the app's (`X-Request-ID`, a new one,
and `X-Model-Version`) and is counted in the metrics, under the endpoint `unread`. As it starts,
the worker starts the app's model refresh (MODEL_REFRESH_SECONDS), which lives in a thread of
each worker.

`gunicorn.conf.py` makes it the worker class (`worker_class`), so `gunicorn predict:app` uses
it; TLS (`certfile`) is left to gunicorn's own worker, which then reads as gthread does.
"""

from __future__ import annotations

import contextlib
import errno
import json
import selectors
import time
from functools import partial
from typing import Any

from gunicorn import util
from gunicorn.workers.gthread import TConn, ThreadWorker

from ride_duration.online import request_ids
from ride_duration.online.metrics import UNREAD
from ride_duration.online.reading import MAX_HEADER_BYTES, Reading
from ride_duration.online.web import MAX_BODY_BYTES, Service, service_of

_STATUS_LINE_END = b"\r\n"


class BufferingWorker(ThreadWorker):  # type: ignore[misc]  # gunicorn has no type information
    """gthread, with each request read whole in the event loop before a thread takes it."""

    alive: bool  # gunicorn's: the event loop runs while it holds

    def init_process(self) -> None:
        from ride_duration.core.settings import Settings

        settings = Settings.from_env()
        self.client_timeout = float(settings.web_client_timeout_seconds)
        self.drain_seconds = float(settings.web_drain_seconds)
        self.drain_deadline: float | None = None  # set by SIGTERM
        self.drain_said = False
        self.service: Service | None = None
        self.reading: dict[Any, Reading] = {}  # connection -> its request so far
        super().init_process()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.service = service_of(self.wsgi)
        if self.service is None:
            return
        if self.drain_deadline is not None:  # SIGTERM came first
            self.service.draining.set()
        # Before the first request: the model named in the metrics, its refresh started and its
        # first look done (a worker started after the alias moved then serves the new version
        # from the start), within half gunicorn's timeout, which this worker's silence counts.
        self.service.in_this_process(wait_seconds=min(10.0, self.cfg.timeout / 2))

    def handle_exit(self, sig: int, frame: Any) -> None:
        """SIGTERM: drain (see the module), rather than gthread's stop at once."""
        if self.drain_deadline is not None:
            return None  # draining already
        self.drain_deadline = time.monotonic() + self.drain_seconds
        if self.service is not None:
            self.service.draining.set()
        if self.drain_seconds <= 0:
            super().handle_exit(sig, frame)  # no drain: stop accepting at once, as gthread does
        else:
            self.method_queue.defer(lambda: None)  # wake the event loop: it times the drain
        return None

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        if self.alive and self.drain_deadline is not None:  # wake when the drain ends
            timeout = min(timeout, max(self.drain_deadline - time.monotonic(), 0.0))
        super().wait_for_and_dispatch_events(timeout)

    def _drained(self, now: float) -> None:
        """Stop accepting once the drain is over: refuse what is still arriving, close idle
        connections; gthread then waits for the requests in flight and exits."""
        if self.drain_deadline is None or not self.alive:
            return
        if not self.drain_said:
            self.drain_said = True
            self.log.info(
                "SIGTERM: draining, /ready answers 503, serving %.0f s more", self.drain_seconds
            )
        if now < self.drain_deadline:
            return
        self.alive = False
        for conn in list(self.reading):
            self._refuse(conn, 503)
        while self.keepalived_conns:
            conn = self.keepalived_conns.popleft()
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.poller.unregister(conn.sock)
            self.nr_conns -= 1
            conn.close()
        self.log.info("drained: no new connections, %d requests in flight", self.nr_conns)

    def accept(self, listener: Any) -> None:
        if self.cfg.is_ssl:
            super().accept(listener)
            return None
        try:
            client, address = listener.accept()
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return None
        self.nr_conns += 1
        self._read(TConn(self.cfg, client, address, listener.getsockname()))
        return None

    def on_client_socket_readable(self, conn: TConn, client: Any) -> None:
        """A kept-alive connection has a new request: read it whole first."""
        if self.cfg.is_ssl:
            super().on_client_socket_readable(conn, client)
            return None
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._read(conn)
        return None

    def _read(self, conn: TConn) -> None:
        conn.sock.setblocking(False)
        self.reading[conn] = Reading(time.monotonic() + self.client_timeout, MAX_BODY_BYTES)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_bytes, conn))

    def _on_bytes(self, conn: TConn, client: Any) -> None:
        reading = self.reading[conn]
        try:
            chunk = client.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:  # the client went away
            self._drop(conn)
            return
        state = reading.feed(chunk)
        if state is None:
            if reading.wants_continue():
                reading.continued = True
                self._send(conn, b"HTTP/1.1 100 Continue\r\n\r\n")
            return
        if state != "whole":
            self._refuse(conn, int(state))
            return
        self.poller.unregister(client)
        del self.reading[conn]
        conn.request_bytes = reading.request()
        conn.data_ready = True  # gthread must not wait for data: it is all here
        self.enqueue_req(conn)

    def handle(self, conn: TConn) -> Any:
        request = getattr(conn, "request_bytes", None)
        if request is not None:
            conn.request_bytes = None
            conn.sock.setblocking(True)
            conn.init()
            # Behind whatever the parser holds already (read ahead of an earlier request).
            unreader = conn.parser.unreader
            unreader.unread(unreader.take_buffered() + request)
        return super().handle(conn)

    def handle_request(self, req: Any, conn: TConn) -> Any:
        # The answer must be taken within the client timeout, or the thread lets it go.
        conn.sock.settimeout(self.client_timeout)
        if self.drain_deadline is not None:  # draining: the client's next request goes elsewhere
            req.must_close = True
        try:
            return super().handle_request(req, conn)
        except TimeoutError:
            self.log.debug("a client did not take its answer within %.0f s", self.client_timeout)
            return False

    def murder_keepalived(self) -> None:
        super().murder_keepalived()
        now = time.monotonic()
        for conn in [c for c, reading in self.reading.items() if reading.deadline <= now]:
            self._refuse(conn, 408)
        self._drained(now)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """gunicorn's own answer to what its parser refuses (400, 431, ...), with our headers."""
        written = _Written()
        super().handle_error(req, written, addr, exc)
        if written.data:
            head, _, rest = bytes(written.data).partition(_STATUS_LINE_END)
            status = head.split(b" ", 2)[1:2]
            self._count(int(status[0]) if status and status[0].isdigit() else 0)
            with contextlib.suppress(OSError):  # as gunicorn sends it: what the buffer takes
                util.write_nonblock(client, head + _STATUS_LINE_END + self._headers() + rest)

    def _refuse(self, conn: TConn, status: int) -> None:
        messages = {
            408: f"the request did not arrive whole within {self.client_timeout:.0f} s",
            413: f"the body is larger than {MAX_BODY_BYTES:,} bytes: send fewer rides",
            431: f"the request's headers are larger than {MAX_HEADER_BYTES:,} bytes",
            503: "the service is stopping: send the request again",
        }
        reasons = {
            408: "Request Timeout",
            413: "Content Too Large",
            431: "Headers Too Large",
            503: "Service Unavailable",
        }
        body = json.dumps({"error": messages[status], "field": None}).encode()
        head = (
            f"HTTP/1.1 {status} {reasons[status]}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n"
        )
        self._count(status)
        self._send(conn, head.encode() + self._headers() + b"\r\n" + body)
        self._drop(conn)

    def _headers(self) -> bytes:
        """The app's headers for an answer of the worker's own: a new request id, the model."""
        request_id = request_ids.new()
        if self.service is None:
            return f"{request_ids.HEADER}: {request_id}\r\n".encode()
        lines = self.service.headers(request_id).items()
        return "".join(f"{name}: {value}\r\n" for name, value in lines).encode("latin-1", "replace")

    def _count(self, status: int) -> None:
        if self.service is not None:
            self.service.metrics.answered(UNREAD, status)

    def _send(self, conn: TConn, data: bytes) -> None:
        with contextlib.suppress(OSError):  # a small answer: the buffer takes it, or it is lost
            conn.sock.send(data)

    def _drop(self, conn: TConn) -> None:
        if self.reading.pop(conn, None) is not None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.poller.unregister(conn.sock)
        self.nr_conns -= 1
        conn.close()


class _Written:
    """A socket stand-in that keeps what gunicorn's error page writes (`util.write_nonblock`)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def gettimeout(self) -> float:
        return 0.0  # non-blocking already: write_nonblock then only calls sendall

    def sendall(self, data: bytes) -> None:
        self.data += data
