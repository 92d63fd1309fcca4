"""Kinesis for the stream scorer (`ride_duration.online.kinesis`): a stream checked once at
start, each way it can fail told apart in one line."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
)

from ride_duration.core.errors import (
    ConfigurationError,
    InputNotFoundError,
    InputUnreachableError,
    ScoringError,
)
from ride_duration.core.settings import Settings
from ride_duration.online.kinesis import check_stream, kinesis_client

ENDPOINT = "http://127.0.0.1:4567"


class Describing:
    """A Kinesis client whose DescribeStreamSummary raises `error` (None: the stream is there)."""

    def __init__(self, error: Exception | None) -> None:
        self.error = error
        self.meta = SimpleNamespace(endpoint_url=ENDPOINT)
        self.described: list[str] = []

    def describe_stream_summary(self, *, StreamName: str) -> dict:  # boto3 names
        self.described.append(StreamName)
        if self.error is not None:
            raise self.error
        return {"StreamDescriptionSummary": {"StreamName": StreamName}}


def client_error(code: str, message: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "DescribeStreamSummary")


@pytest.mark.parametrize(
    ("error", "kind", "line"),
    [
        (
            client_error("ResourceNotFoundException", "Stream ride_events not found"),
            InputNotFoundError,
            f"no Kinesis stream ride_events at {ENDPOINT}",
        ),
        (
            EndpointConnectionError(endpoint_url=ENDPOINT, error="[Errno 111] Connection refused"),
            InputUnreachableError,
            f"Kinesis at {ENDPOINT} did not answer (connection refused): start it, or set "
            "KINESIS_ENDPOINT_URL (or AWS_ENDPOINT_URL) to where it listens",
        ),
        (
            EndpointConnectionError(endpoint_url=ENDPOINT, error="Name or service not known"),
            InputUnreachableError,
            f"Kinesis at {ENDPOINT} did not answer (no such host)",
        ),
        (
            ConnectTimeoutError(endpoint_url=ENDPOINT),
            InputUnreachableError,
            f"Kinesis at {ENDPOINT} did not answer (timed out)",
        ),
        (
            client_error("500", "<html>\n<title>500</title>\n</html>"),
            ConfigurationError,
            f"Kinesis at {ENDPOINT} refused to describe stream ride_events: 500: <html> <title>",
        ),
        (
            NoCredentialsError(),
            ConfigurationError,
            "no AWS credentials for Kinesis: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        ),
    ],
    ids=["not there", "refused", "no such host", "timed out", "refused the call", "no keys"],
)
def test_a_stream_that_cannot_be_used_is_one_line_naming_the_cause(error, kind, line):
    client = Describing(error)
    with pytest.raises(ScoringError) as refused:
        check_stream(
            client,
            "ride_events",
            missing=lambda endpoint: InputNotFoundError(
                f"no Kinesis stream ride_events at {endpoint}"
            ),
            unreachable=InputUnreachableError,
        )
    assert type(refused.value) is kind
    assert str(refused.value).startswith(line)
    assert "\n" not in str(refused.value)
    assert client.described == ["ride_events"]


def test_a_stream_that_is_there_passes():
    client = Describing(None)
    check_stream(client, "s", missing=InputNotFoundError, unreachable=InputUnreachableError)
    assert client.described == ["s"]


@pytest.mark.parametrize(
    ("writes_only", "hint"),
    [(True, ", or run with TEST_RUN=True to write nothing"), (False, "")],
)
def test_kinesis_without_a_region_is_one_line_that_says_which_variable(
    tmp_path, monkeypatch, writes_only, hint
):
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))  # no region from a profile
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigurationError) as refused:
        kinesis_client(Settings(), writes_only=writes_only)
    assert str(refused.value) == (
        f"no AWS region for Kinesis: set AWS_DEFAULT_REGION (e.g. eu-west-1){hint}"
    )
