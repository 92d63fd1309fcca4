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


class Throttled(Describing):
    """A Kinesis client whose DescribeStreamSummary is throttled `times` times first."""

    def __init__(self, code: str, times: int) -> None:
        super().__init__(None)
        self.code, self.times = code, times

    def describe_stream_summary(self, *, StreamName: str) -> dict:
        if self.times:
            self.times -= 1
            self.described.append(StreamName)
            raise client_error(self.code, "Rate exceeded")
        return super().describe_stream_summary(StreamName=StreamName)


def check_throttled(client: Throttled, pauses: list[float]) -> None:
    """check_stream of stream "s" on `client`, its pauses kept in `pauses` instead of slept."""
    check_stream(
        client,
        "s",
        missing=InputNotFoundError,
        unreachable=InputUnreachableError,
        sleep=pauses.append,
    )


@pytest.mark.parametrize(
    "code", ["LimitExceededException", "ProvisionedThroughputExceededException"]
)
def test_a_throttled_look_up_is_tried_again_for_a_few_seconds(code):
    client, pauses = Throttled(code, times=4), []
    check_throttled(client, pauses)
    assert client.described == ["s"] * 5
    assert len(pauses) == 4
    assert all(0 <= pause <= 0.8 for pause in pauses)  # the backoff's ceilings: 0.1, 0.2, ...


def test_a_look_up_throttled_all_along_is_one_line_after_ten_seconds():
    client, pauses = Throttled("LimitExceededException", times=10_000), []
    with pytest.raises(ConfigurationError) as refused:
        check_throttled(client, pauses)
    assert sum(pauses) == pytest.approx(10.0)
    assert str(refused.value) == (
        f"Kinesis at {ENDPOINT} throttled every look-up of stream s for 10 s "
        "(LimitExceededException): too many calls on the account; start again later"
    )


@pytest.mark.parametrize(("retries", "attempts"), [(True, None), (False, 1)])
def test_a_client_that_retries_itself_gets_botocores_retries_off(monkeypatch, retries, attempts):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = kinesis_client(Settings(), retries=retries)
    assert client.meta.config.retries.get("total_max_attempts") == attempts
