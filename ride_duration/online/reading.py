"""A request arriving in the web worker's event loop: read without blocking until it is whole.

The worker (`online.worker`) feeds a connection's bytes to a `Reading` as they come; it says when
the request is whole (its headers, and its body by Content-Length or chunks), or the status that
refuses it before it is read (413 for a body over its limit, 431 for headers over 64 KiB). What
gunicorn's parser refuses anyway is handed over at once, unread, for gunicorn to answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_HEADER_BYTES = 64 << 10
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]+)[^\r\n]*\r?\n")
_CONTINUE = re.compile(rb"(?im)^expect:[ \t]*100-continue[ \t]*\r?\n")


@dataclass
class Reading:
    """A request arriving on a connection: the bytes so far, and where its body ends."""

    deadline: float
    max_body: int
    data: bytearray = field(default_factory=bytearray)
    body_start: int | None = None  # where the body begins, once the headers are in
    body_length: int | None = None  # by Content-Length; None: chunked, or no body
    chunked: bool = False
    chunk_at: int = 0  # where the next chunk's size line begins
    continued: bool = False  # a 100 Continue was sent

    def feed(self, chunk: bytes) -> int | str | None:
        """Add bytes; None while the request is not whole, "whole" once it is, else the
        status that refuses it (413, 431)."""
        self.data += chunk
        if self.body_start is None:
            end = _HEADER_END.search(self.data)
            if end is None:
                return 431 if len(self.data) > MAX_HEADER_BYTES else None
            if end.start() > MAX_HEADER_BYTES:
                return 431
            self.body_start = self.chunk_at = end.end()
            refused = self._read_headers(bytes(self.data[: end.start()]))
            if refused is not None:
                return refused
        if self.chunked:
            return self._chunks()
        if self.body_length is None or len(self.data) - self.body_start >= self.body_length:
            return "whole"
        return None

    def _read_headers(self, head: bytes) -> int | str | None:
        lengths, encodings = set(), []
        for line in head.split(b"\n")[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip()
            if name == b"content-length":
                lengths.add(value)
            elif name == b"transfer-encoding":
                encodings.append(value.lower())
        if encodings and b"chunked" in b",".join(encodings):
            if lengths:
                return "whole"  # both: gunicorn's parser refuses it, reading nothing more
            self.chunked = True
            return None
        if len(lengths) > 1 or (lengths and not next(iter(lengths)).isdigit()):
            return "whole"  # a Content-Length gunicorn's parser refuses: 400, body unread
        if lengths:
            self.body_length = int(next(iter(lengths)))
            if self.body_length > self.max_body:
                return 413
        return None

    def _chunks(self) -> int | str | None:
        """Walk the chunks received so far; "whole" after the last chunk and its trailers."""
        assert self.body_start is not None  # chunks are read once the headers are in
        while True:
            size = _CHUNK_SIZE.match(self.data, self.chunk_at)
            if size is None:  # a line that is no chunk size: gunicorn's parser refuses it (400)
                line_done = b"\n" in self.data[self.chunk_at :]
                return "whole" if line_done or len(self.data) - self.chunk_at > 1024 else None
            length = int(size.group(1), 16)
            if length == 0:  # the last chunk: then trailer lines, if any, and an empty line
                rest = bytes(self.data[size.end() :])
                return "whole" if rest.startswith(b"\r\n") or b"\r\n\r\n" in rest else None
            end = size.end() + length + 2  # the chunk and its line end
            if end - self.body_start > self.max_body:
                return 413
            if len(self.data) < end:
                return None
            self.chunk_at = end

    def wants_continue(self) -> bool:
        """Whether the client waits for a 100 Continue before it sends the body."""
        head = bytes(self.data[: self.body_start or 0])
        return not self.continued and self.body_start is not None and bool(_CONTINUE.search(head))

    def request(self) -> bytes:
        """The whole request, without an Expect this worker answered already."""
        data = bytes(self.data)
        if self.continued:
            head, body = data[: self.body_start], data[self.body_start :]
            data = _CONTINUE.sub(b"", head, count=1) + body
        return data
