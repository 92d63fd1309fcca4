"""Kinesis for the stream scorer: a client made from the settings, and a stream checked at start.

A stream the scorer reads or writes is looked up once before anything else (one
DescribeStreamSummary, with short timeouts and one retry), so that a wrong endpoint, a missing
stream or a missing region is one line within seconds, not a traceback after botocore's own
retries, or a batch of records reported failed one by one. An endpoint that does not answer
(DNS, refused, timed out) is told apart from a stream that is not there, and a throttled look-up
is tried again for a few seconds (`throttling.Backoff`) before it is one line too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ride_duration.core.errors import (
    ConfigurationError,
    InputNotFoundError,
    InputUnreachableError,
    OutputWriteError,
    ScoringError,
)
from ride_duration.core.settings import Settings
from ride_duration.core.uris import display_uri
from ride_duration.online.throttling import THROTTLED, Backoff

# The first call says whether the endpoint answers: 2 s to connect, twice at most, is plenty on
# any network that would carry the stream, and keeps a dead endpoint's answer within seconds.
CHECK_CONNECT_SECONDS = 2
CHECK_READ_SECONDS = 5
CHECK_ATTEMPTS = 2
# A look-up Kinesis throttles is tried again for this long (DescribeStreamSummary is limited per
# account: a burst of starts can meet it), then is one line: within a Lambda's usual timeout.
CHECK_THROTTLED_SECONDS = 10.0


def kinesis_client(
    settings: Settings, *, check: bool = False, writes_only: bool = True, retries: bool = True
) -> Any:
    """A boto3 Kinesis client: KINESIS_ENDPOINT_URL (the course's), else AWS_ENDPOINT_URL.

    `check` makes one with short timeouts and one retry, for `check_stream`; `retries=False`
    one that tries each call once, for a caller that retries them itself (the consumer, with
    `throttling.RetryingKinesis`). Without a region (boto3 will not guess one),
    ConfigurationError in one line; for a scorer that only writes (`writes_only`), it says that
    TEST_RUN=True writes nothing.
    """
    import boto3
    from botocore.config import Config
    from botocore.exceptions import NoRegionError

    config = None
    if check:
        config = Config(
            connect_timeout=CHECK_CONNECT_SECONDS,
            read_timeout=CHECK_READ_SECONDS,
            retries={"mode": "standard", "total_max_attempts": CHECK_ATTEMPTS},
        )
    elif not retries:
        config = Config(retries={"mode": "standard", "total_max_attempts": 1})
    try:
        return boto3.client("kinesis", endpoint_url=settings.kinesis_endpoint_url, config=config)
    except NoRegionError:
        hint = ", or run with TEST_RUN=True to write nothing" if writes_only else ""
        raise ConfigurationError(
            f"no AWS region for Kinesis: set AWS_DEFAULT_REGION (e.g. eu-west-1){hint}"
        ) from None


def check_input(settings: Settings) -> None:
    """The stream `stream.py` reads (INPUT_STREAM_NAME) exists and its endpoint answers."""
    name = settings.input_stream_name
    check_stream(
        kinesis_client(settings, check=True, writes_only=False),
        name,
        missing=lambda endpoint: InputNotFoundError(
            f"no Kinesis stream {name} at {endpoint}: create it, or set INPUT_STREAM_NAME to "
            "the stream to read"
        ),
        unreachable=InputUnreachableError,
    )


def check_output(settings: Settings) -> None:
    """The stream predictions go to (PREDICTIONS_STREAM_NAME) exists and its endpoint answers."""
    name = settings.predictions_stream_name
    check_stream(
        kinesis_client(settings, check=True),
        name,
        missing=lambda endpoint: ConfigurationError(
            f"no Kinesis stream {name} at {endpoint}: create it, or set "
            "PREDICTIONS_STREAM_NAME to the stream to write to (TEST_RUN=True writes nothing)"
        ),
        unreachable=OutputWriteError,
    )


def check_stream(
    client: Any,
    name: str,
    *,
    missing: Callable[[str], ScoringError],
    unreachable: type[ScoringError],
    sleep: Callable[[float], object] = time.sleep,
) -> None:
    """Describe stream `name`: `missing(endpoint)` when it is not there, `unreachable` when the
    endpoint does not answer, ConfigurationError when Kinesis refuses the call (credentials,
    permissions) or still throttles it after CHECK_THROTTLED_SECONDS."""
    backoff, waited, attempt = Backoff(), 0.0, 0
    while True:
        try:
            return _describe(client, name, missing=missing, unreachable=unreachable)
        except _Throttled as throttled:
            if waited >= CHECK_THROTTLED_SECONDS:
                raise ConfigurationError(
                    f"Kinesis at {display_uri(client.meta.endpoint_url)} throttled every look-up "
                    f"of stream {name} for {waited:.0f} s ({throttled}): too many calls on the "
                    "account; start again later"
                ) from None
        pause = min(backoff.delay(attempt), CHECK_THROTTLED_SECONDS - waited)
        sleep(pause)
        waited, attempt = waited + pause, attempt + 1


class _Throttled(Exception):
    """DescribeStreamSummary was throttled (its error code)."""


def _describe(
    client: Any,
    name: str,
    *,
    missing: Callable[[str], ScoringError],
    unreachable: type[ScoringError],
) -> None:
    """One DescribeStreamSummary of `name`, its failures as `check_stream` tells them."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionError,
        HTTPClientError,
        NoCredentialsError,
    )

    endpoint = display_uri(client.meta.endpoint_url)
    try:
        client.describe_stream_summary(StreamName=name)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code == "ResourceNotFoundException":
            raise missing(endpoint) from None
        if code in THROTTLED:
            raise _Throttled(code) from None
        message = " ".join(str(error.response.get("Error", {}).get("Message", "")).split())
        raise ConfigurationError(  # the message cut short: a proxy's may be a whole HTML page
            f"Kinesis at {endpoint} refused to describe stream {name}: {code}: {message[:200]}"
        ) from None
    except NoCredentialsError:
        raise ConfigurationError(
            "no AWS credentials for Kinesis: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        ) from None
    except (ConnectionError, HTTPClientError) as error:
        raise unreachable(
            f"Kinesis at {endpoint} did not answer ({_why(error)}): start it, or set "
            "KINESIS_ENDPOINT_URL (or AWS_ENDPOINT_URL) to where it listens"
        ) from None
    except BotoCoreError as error:  # anything else botocore says is about the setup
        raise ConfigurationError(f"Kinesis at {endpoint}: {error}") from None


def _why(error: Exception) -> str:
    """What went wrong with a connection, in a few words."""
    text = f"{error} {getattr(error, 'kwargs', {}).get('error', '')}".lower()
    if "timeout" in text or "timed out" in text:
        return "timed out"
    if "refused" in text:
        return "connection refused"
    if "name or service" in text or "resolution" in text or "getaddrinfo" in text:
        return "no such host"
    return "no connection"
