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

from gunicorn.workers.gthread import TConn, ThreadWorker

from ride_duration.online.reading import MAX_HEADER_BYTES, Reading
from ride_duration.online.web import MAX_BODY_BYTES


class BufferingWorker(ThreadWorker):  # type: ignore[misc]  # gunicorn has no type information
    """gthread, with each request read whole in the event loop before a thread takes it."""

    def init_process(self) -> None:
        from ride_duration.core.settings import Settings

        self.client_timeout = float(Settings.from_env().web_client_timeout_seconds)
        self.reading: dict[Any, Reading] = {}  # connection -> its request so far
        super().init_process()

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

    def _refuse(self, conn: TConn, status: int) -> None:
        messages = {
            408: f"the request did not arrive whole within {self.client_timeout:.0f} s",
            413: f"the body is larger than {MAX_BODY_BYTES:,} bytes: send fewer rides",
            431: f"the request's headers are larger than {MAX_HEADER_BYTES:,} bytes",
        }
        reasons = {408: "Request Timeout", 413: "Content Too Large", 431: "Headers Too Large"}
        body = json.dumps({"error": messages[status], "field": None}).encode()
        head = (
            f"HTTP/1.1 {status} {reasons[status]}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        self._send(conn, head.encode() + body)
        self._drop(conn)

    def _send(self, conn: TConn, data: bytes) -> None:
        with contextlib.suppress(OSError):  # a small answer: the buffer takes it, or it is lost
            conn.sock.send(data)

    def _drop(self, conn: TConn) -> None:
        if self.reading.pop(conn, None) is not None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.poller.unregister(conn.sock)
        self.nr_conns -= 1
        conn.close()
