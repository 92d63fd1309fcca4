"""A model's folder on S3, copied with boto3 alone.

The serving install has neither fsspec nor s3fs (`core.storage` reads trips and writes
predictions with them); a model's few files need no more than boto3, which the stream scorer
has anyway. `AWS_ENDPOINT_URL` points boto3 at an S3-compatible server, as it does s3fs.
Failures come back as the OSError subclasses fsspec raises, so callers see one kind.
"""

from __future__ import annotations

import os

from ride_duration.core.uris import display_uri

# S3's answers that mean "not there" and "not yours", as botocore's ClientError codes.
_MISSING = {"404", "NoSuchKey", "NoSuchBucket"}
_REFUSED = {"403", "AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId"}


def copy_folder(uri: str, local_folder: str, only: tuple[str, ...] | None = None) -> str:
    """Copy the objects below `uri` (`s3://BUCKET/PREFIX`) into `local_folder`; return it.

    With `only`, just those files of the folder's top level, the ones that exist. A key that
    would land outside `local_folder` (a `..` segment) is refused, as is a folder with no file.
    """
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/")
    client = boto3.client("s3")
    try:
        if only is not None:
            for name in only:
                try:
                    client.download_file(
                        bucket, _key(prefix, name), os.path.join(local_folder, name)
                    )
                except ClientError as error:
                    if _code(error) not in _MISSING:
                        raise
            return local_folder
        copied = 0
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=f"{prefix}/" if prefix else ""
        )
        for page in pages:
            for item in page.get("Contents", []):
                relative = item["Key"][len(prefix) + 1 :] if prefix else item["Key"]
                if not relative or relative.endswith("/"):
                    continue  # a folder marker
                client.download_file(bucket, item["Key"], _target(local_folder, relative, uri))
                copied += 1
    except ClientError as error:
        code, shown = _code(error), display_uri(uri)
        if code in _MISSING:
            raise FileNotFoundError(f"{shown}: {code}") from None
        if code in _REFUSED:
            raise PermissionError(f"{shown}: {code}") from None
        raise OSError(f"{shown}: {error}") from None
    except BotoCoreError as error:  # no answer, no credentials: botocore's own failures
        raise OSError(f"{display_uri(uri)}: {error}") from None
    if not copied:
        raise FileNotFoundError(f"no files at {display_uri(uri)}")
    return local_folder


def _key(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def _target(local_folder: str, relative: str, uri: str) -> str:
    """Where an object's key lands below `local_folder`, refusing one that would leave it."""
    parts = relative.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise PermissionError(f"{display_uri(uri)}: the key {relative!r} leaves its folder")
    target = os.path.join(local_folder, *parts)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    return target


def _code(error: Exception) -> str:
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))
