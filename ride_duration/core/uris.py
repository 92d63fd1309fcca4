"""Rules about locations written as text: what may be logged, what carries credentials, what
lies inside what. Pure string work (the standard library only): reading and writing bytes is
`ride_duration.core.storage`'s."""

from __future__ import annotations

import os
import posixpath
import re
from urllib.parse import urlsplit

from ride_duration.core.errors import ConfigurationError

_SECRET_QUERY = re.compile(
    r"(?i)(signature|credential|token|secret|password|access_key|sig|key)=", re.IGNORECASE
)
# "models:/...", "runs:/...", "mlflow-artifacts:/...": a scheme and a path, no host.
_SCHEME_PATH = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):(/.*)?")


def display_uri(uri: str) -> str:
    """`uri` without credentials (`user:password@`, `token@`, signed query strings): safe to log."""
    uri = re.sub(r"(?<=://)[^/@]*@", "", uri)
    return uri.split("?", 1)[0]


def check_no_credentials(uri: str, what: str) -> None:
    """Refuse a URI carrying credentials: they would end up in parameters, logs, manifests.

    Any user part counts (`user:password@host`, and a token alone, `TOKEN@host`), as does a
    query that signs or authorises.
    """
    userinfo = re.search(r"://([^/@]*)@", uri)
    query = uri.split("?", 1)[1] if "?" in uri else ""
    if userinfo or _SECRET_QUERY.search(query):
        raise ConfigurationError(
            f"{what} {display_uri(uri)} carries credentials: give them through the environment "
            "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, MLFLOW_TRACKING_TOKEN, ...) instead"
        )


Location = tuple[str, str, tuple[str, ...]]


def location(uri: str) -> Location | None:
    """A location as (scheme, host or bucket, path segments), local paths resolved; None when
    it cannot be told apart from another (a `.` or `..` in a remote path, which stores keep
    as they are while readers may resolve them)."""
    uri = uri.strip()
    if "://" in uri:
        parts = urlsplit(uri)
        scheme, host, path = parts.scheme.lower(), parts.netloc.rsplit("@", 1)[-1], parts.path
        if scheme == "file":
            return _local(path)
        segments = tuple(part for part in path.split("/") if part)
        if any(part in (".", "..") for part in segments):
            return None
        return scheme, host.lower() if scheme != "s3" else host, segments
    found = _SCHEME_PATH.fullmatch(uri)
    if found and len(found.group(1)) > 1:  # a one-letter scheme is a Windows drive
        segments = tuple(part for part in (found.group(2) or "").split("/") if part)
        if any(part in (".", "..") for part in segments):
            return None
        return found.group(1).lower(), "", segments
    return _local(uri)


def _local(path: str) -> Location:
    resolved = os.path.realpath(os.path.expanduser(path or "."))
    return "file", "", tuple(part for part in resolved.split(os.sep) if part)


def is_under(uri: str, prefix: str) -> bool:
    """Whether `uri` is the location `prefix` names, or lies below it: whole path segments
    (`/srv/models` holds `/srv/models/x`, not `/srv/models-scratch/x`), the same bucket
    (`s3://company-models` is not `s3://company-models-public`), local paths resolved
    (`/srv/models/../../tmp/x` is `/tmp/x`), and a prefix's own trailing `/` meaning nothing."""
    place, root = location(uri), location(prefix)
    if place is None or root is None:
        return False
    return place[:2] == root[:2] and place[2][: len(root[2])] == root[2]


def is_trusted(uri: str, prefixes: tuple[str, ...]) -> bool:
    """Whether `uri` lies under one of `prefixes` (`is_under`)."""
    return any(is_under(uri, prefix) for prefix in prefixes if prefix.strip())


def join(root: str, *parts: str) -> str:
    """`root` and `parts` joined with "/" (for local paths and URLs alike)."""
    return posixpath.join(root.rstrip("/"), *parts)
