"""Request ids: the `X-Request-ID` a client or proxy sends, kept when it is safe, else a new one.

A kept id is 1 to 128 ASCII letters, digits and `-_.:` (a UUID with or without its dashes,
nginx's `$request_id`, Envoy's and most tracers' ids fit). Anything else (too long, empty,
spaces, control characters, other scripts, two ids in one header) is replaced by a new id, not
refused: the id is there to find a request in the logs, so a malformed one must not cost the
client its prediction, and what is logged and echoed can then never carry a line break, a quote
or a megabyte. The answer's `X-Request-ID` is the id its log line holds.
"""

from __future__ import annotations

import re
import uuid

HEADER = "X-Request-ID"
MAX_CHARACTERS = 128
_KEPT = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_CHARACTERS}}}")


def new() -> str:
    """A new request id: a random UUID as 32 hex digits."""
    return uuid.uuid4().hex


def kept(sent: str | None) -> bool:
    """Whether a sent id is one the service keeps (see the module's rule)."""
    return sent is not None and _KEPT.fullmatch(sent) is not None


def request_id(sent: str | None) -> str:
    """The id of a request: the one sent when it is kept, else a new one."""
    return sent if sent is not None and kept(sent) else new()
