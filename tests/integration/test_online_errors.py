"""The online entry points failing as a user meets them: real processes of the serving install,
each case one line on stderr with its cause, said once, no traceback, exit code 2, within
seconds, and nothing left in the folder it ran in; and their --help, which starts nothing.

Kinesis is the session's moto server, with an input and an output stream that exist: each case
breaks one thing (the region, the endpoint, a stream's name, a WEB_* variable).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from tests.conftest import REPO
from tests.integration.conftest import Install, Services, Trained, serving_install
from tests.support.failures import assert_one_line_failure, files_in
from tests.support.servers import refused_url
from tests.support.troubleshooting import assert_documented

RIDE = {"ride": {"PULocationID": 130, "DOLocationID": 205, "trip_distance": 3.66}, "ride_id": 156}
UNREACHABLE = (
    "error: Kinesis at {dead} did not answer (connection refused): start it, or set "
    "KINESIS_ENDPOINT_URL (or AWS_ENDPOINT_URL) to where it listens"
)
NO_REGION = "error: no AWS region for Kinesis: set AWS_DEFAULT_REGION (e.g. eu-west-1)"
NO_OUTPUT = (
    "error: no Kinesis stream no-such-output at {endpoint}: create it, or set "
    "PREDICTIONS_STREAM_NAME to the stream to write to (TEST_RUN=True writes nothing)"
)
WITHIN_SECONDS = 20  # a process start and one failed call, on a busy 2-core machine


@dataclass(frozen=True)
class Case:
    """One failure: the entry point, what the case changes in the environment (None: unset),
    and the whole line it must say ({endpoint}: the session's Kinesis, {dead}: a dead one)."""

    name: str
    command: str  # "stream", "lambda" or "gunicorn"
    env: dict[str, str | None]
    line: str


NO_REGION_ENV = {"AWS_DEFAULT_REGION": None, "AWS_REGION": None}
CASES = [
    Case("stream.py, no AWS region", "stream", NO_REGION_ENV, NO_REGION),
    Case(
        "stream.py, Kinesis unreachable", "stream", {"KINESIS_ENDPOINT_URL": "{dead}"}, UNREACHABLE
    ),
    Case(
        "stream.py, no input stream",
        "stream",
        {"INPUT_STREAM_NAME": "no-such-input"},
        "error: no Kinesis stream no-such-input at {endpoint}: create it, or set "
        "INPUT_STREAM_NAME to the stream to read",
    ),
    Case(
        "stream.py, no output stream",
        "stream",
        {"PREDICTIONS_STREAM_NAME": "no-such-output"},
        NO_OUTPUT,
    ),
    Case(
        "lambda_function.py, no AWS region",
        "lambda",
        NO_REGION_ENV,
        NO_REGION + ", or run with TEST_RUN=True to write nothing",
    ),
    Case(
        "lambda_function.py, Kinesis unreachable",
        "lambda",
        {"KINESIS_ENDPOINT_URL": "{dead}"},
        UNREACHABLE,
    ),
    Case(
        "lambda_function.py, no output stream",
        "lambda",
        {"PREDICTIONS_STREAM_NAME": "no-such-output"},
        NO_OUTPUT,
    ),
    Case(
        "gunicorn, a bad WEB_WORKERS",
        "gunicorn",
        {"WEB_WORKERS": "abc"},
        "error: WEB_WORKERS must be a whole number, got 'abc'",
    ),
]


@pytest.fixture(scope="module")
def serving() -> Install:
    return serving_install()


@pytest.fixture(scope="module")
def streams(services: Services) -> Iterator[tuple[str, str]]:
    """An input and an output stream that exist, so that each case breaks only its one thing."""
    client = boto3.client("kinesis", endpoint_url=services.s3_endpoint, region_name="us-east-1")
    names = (f"ride_events-{uuid.uuid4().hex[:8]}", f"ride_predictions-{uuid.uuid4().hex[:8]}")
    for name in names:
        client.create_stream(StreamName=name, ShardCount=1)
    for name in names:
        client.get_waiter("stream_exists").wait(StreamName=name)
    try:
        yield names
    finally:
        for name in names:
            client.delete_stream(StreamName=name)


def command(install: Install, kind: str) -> list[str]:
    """The entry point as the docs run it, from `install`, from any folder."""
    if kind == "gunicorn":
        return [str(install.bin / "gunicorn"), "-c", str(REPO / "gunicorn.conf.py"), "predict:app"]
    script = {"stream": "stream.py", "lambda": "lambda_function.py"}[kind]
    return [
        str(install.python),
        str(REPO / script),
        *(["--until-idle"] if kind == "stream" else []),
    ]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_an_online_entry_point_fails_with_one_line(
    services: Services,
    trained: Trained,
    serving: Install,
    streams: tuple[str, str],
    tmp_path: Path,
    case: Case,
):
    dead = refused_url()  # nothing listens there
    values = {"endpoint": services.s3_endpoint, "dead": dead}
    env = {
        **serving.env(services.env),
        "MODEL_URI": "models:/ride-duration@production",
        "INPUT_STREAM_NAME": streams[0],
        "PREDICTIONS_STREAM_NAME": streams[1],
        "AWS_CONFIG_FILE": str(tmp_path.parent / "no-aws-config"),  # no region from a profile
        "PYTHONPATH": str(REPO),  # gunicorn's config file imports the package from any folder
    }
    for name, value in case.env.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value.format(**values)
    started = time.monotonic()
    result = subprocess.run(
        command(serving, case.command),
        input=json.dumps(RIDE) + "\n",
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    seconds = time.monotonic() - started
    line = case.line.format(**values)
    assert_one_line_failure(result, line.removeprefix("error: "), 2, workdir=tmp_path)
    assert result.stderr.splitlines()[-1] == line
    assert_documented(line)
    assert result.stdout == ""
    assert seconds < WITHIN_SECONDS, f"{seconds:.1f} s"


@pytest.mark.parametrize("script", ["predict.py", "lambda_function.py", "stream.py"])
def test_help_answers_at_once_and_starts_nothing(
    services: Services, serving: Install, tmp_path: Path, script: str
):
    """--help prints the usage and exits 0, with stdin left open (a command that read it would
    wait for ever) and a tracking server that does not answer (one that loaded the model would
    fail)."""
    env = {**serving.env(services.env), "MLFLOW_TRACKING_URI": refused_url()}
    stdin, held_open = os.pipe()
    try:
        result = subprocess.run(
            [str(serving.python), str(REPO / script), "--help"],
            stdin=stdin,
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        os.close(stdin)
        os.close(held_open)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {script}")
    assert result.stderr == ""
    assert files_in(tmp_path) == set()
