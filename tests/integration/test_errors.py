"""Bad input through the real CLI: exit code 2, one line saying what is wrong (a line
docs/troubleshooting.md lists), said once, no traceback, nothing written or left behind.

The online entry points' failures are test_online_errors.py's.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO
from tests.integration.conftest import TEMPLATE, Services, Trained, run_cli
from tests.support.failures import assert_one_line_failure, files_in
from tests.support.servers import refused_url
from tests.support.tlc_fake import file_name, make_trips, write_trips
from tests.support.troubleshooting import assert_documented


def _write_inputs(folder: Path) -> None:
    good = write_trips(folder / file_name("green", 2021, 3), make_trips("green", 2021, 3, 500))
    data = good.read_bytes()
    (folder / file_name("green", 2021, 5)).write_bytes(b"this is not parquet at all " * 50)
    (folder / file_name("green", 2021, 6)).write_bytes(data[: len(data) // 2])
    write_trips(folder / file_name("green", 2021, 7), make_trips("yellow", 2021, 7, 500))
    write_trips(folder / file_name("fhv", 2021, 3), make_trips("fhv", 2021, 3, 500))
    # Footer intact, pages garbled: fails while reading batches, after output was opened.
    corrupt = bytearray(data)
    corrupt[200 : len(data) // 2] = bytes(len(data) // 2 - 200)
    (folder / file_name("green", 2021, 8)).write_bytes(bytes(corrupt))


CASES = [
    # (case, argv, extra env, fragment of the error line)
    ("unknown taxi type", ["purple", "2021", "3"], {}, "invalid choice: 'purple'"),
    ("month 13", ["green", "2021", "13"], {}, "13 is not between 1 and 12"),
    ("month 0", ["green", "2021", "0"], {}, "0 is not between 1 and 12"),
    ("not published", ["green", "2031", "1"], {}, "may not be published yet"),
    ("not parquet", ["green", "2021", "5"], {}, "is not a readable parquet file"),
    ("truncated", ["green", "2021", "6"], {}, "is not a readable parquet file"),
    ("corrupt pages", ["green", "2021", "8"], {}, "download it again"),
    ("yellow file named green", ["green", "2021", "7"], {}, "it looks like a yellow file"),
    ("feature the type lacks", ["fhv", "2021", "3"], {}, "fhv trips have no trip_distance"),
    ("unknown alias", ["green", "2021", "3"], {"MODEL_ALIAS": "nope"}, "cannot find model"),
    (
        "unknown model",
        ["green", "2021", "3", "--model-uri", "models:/no-such-model/1"],
        {},
        "cannot find model models:/no-such-model/1",
    ),
    (
        "unknown run",
        ["green", "2021", "3", "--model-uri", "runs:/0123abc/model"],
        {},
        "cannot find model",
    ),
    (
        "bad setting",
        ["green", "2021", "3"],
        {"BATCH_SIZE": "lots"},
        "BATCH_SIZE must be a whole number",
    ),
    (
        "untrusted model location",
        ["green", "2021", "3", "--model-uri", "s3://someone-elses-bucket/model"],
        {},
        "is not in a trusted location",
    ),
    (
        "output outside OUTPUT_ROOT",
        ["green", "2021", "3", "--output-root", "/etc/ride-duration"],
        {},
        "is outside OUTPUT_ROOT",
    ),
    (
        "a template reaching into objects",
        ["green", "2021", "3"],
        {"INPUT_URI_TEMPLATE": "/x/{year.__class__}.parquet"},
        "is not one of",
    ),
    ("a quality limit", ["green", "2021", "3"], {"MAX_RMSE": "0.0001"}, "failed its checks: rmse"),
    ("a drop limit", ["green", "2021", "3"], {"MAX_DROP_RATIO": "0.01"}, "of rows dropped"),
]


def _error_line(result: subprocess.CompletedProcess, message: str) -> str:
    return next(line for line in result.stderr.splitlines() if message in line)


@pytest.mark.parametrize(("case", "argv", "extra_env", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_with_one_clear_line_and_writes_nothing(
    services: Services, trained: Trained, tmp_path: Path, case, argv, extra_env, message
):
    _write_inputs(tmp_path / "in")
    work = tmp_path / "work"
    work.mkdir()
    env = {
        **services.env,
        "INPUT_URI_TEMPLATE": str(tmp_path / "in" / TEMPLATE),
        "OUTPUT_ROOT": str(tmp_path / "out"),
        **extra_env,
    }
    result = run_cli("score.py", *argv, env=env, cwd=work)
    # said once: Prefect's own lines about the same failure stay in its run's logs
    assert_one_line_failure(result, message, 2, workdir=work)
    assert_documented(_error_line(result, message))
    assert result.stdout == ""  # the closing line is a published month's
    out = tmp_path / "out"
    left = files_in(out) if out.exists() else set()
    if "limit" in case:  # refused by its checks: its row of the monitoring table says why
        assert left == {out / "_monitoring/green-2021-03.parquet"}
    else:
        assert not left


# (case, command, arguments, extra environment, fragment of the error line, exit code)
COMMANDS = [
    (
        "MLflow down",
        "score.py",
        ["green", "2021", "3"],
        {"MLFLOW_TRACKING_URI": refused_url()},
        "did not answer (Connection refused): start it or set MLFLOW_TRACKING_URI",
        2,
    ),
    (
        "MLflow's host unknown (no network)",
        "score.py",
        ["green", "2021", "3"],
        {"MLFLOW_TRACKING_URI": "http://mlflow.invalid:5000"},
        "MLflow tracking server http://mlflow.invalid:5000 did not answer",
        2,
    ),
    (
        "the trip files' host unknown (no network)",
        "score.py",
        ["green", "2021", "3"],
        {"INPUT_URI_TEMPLATE": "https://tlc.invalid/" + TEMPLATE},
        "cannot reach https://tlc.invalid/green_tripdata_2021-03.parquet",
        2,
    ),
    (
        "the trip files' server down",
        "score.py",
        ["green", "2021", "3"],
        {"INPUT_URI_TEMPLATE": "https://127.0.0.1:1/" + TEMPLATE},  # port 1: nobody listens
        "cannot reach https://127.0.0.1:1/green_tripdata_2021-03.parquet: Cannot connect to host",
        2,
    ),
    (
        "the trip files' bucket not there",
        "score.py",
        ["green", "2021", "3"],
        {"INPUT_URI_TEMPLATE": "s3://no-such-bucket/" + TEMPLATE},
        "no trip file at s3://no-such-bucket/green_tripdata_2021-03.parquet",
        2,
    ),
    (
        "the output bucket not there",
        "score.py",
        ["green", "2021", "3"],
        {"OUTPUT_ROOT": "s3://no-such-bucket/predictions"},
        "cannot write s3://no-such-bucket/predictions/taxi_type=green/year=2021/month=03/",
        2,
    ),
    (
        "a store that is not there, from another folder",
        "score.py",
        ["green", "2021", "3"],
        {"MLFLOW_TRACKING_URI": "sqlite:///mlflow.db"},
        "MLFLOW_TRACKING_URI sqlite:///mlflow.db names no MLflow store",
        2,
    ),
    (
        "backfill: a month that cannot be read",
        "backfill.py",
        ["green", "2021-04", "2021-05"],  # April is not published: left alone
        {},
        "error: 1 of 2 months failed: green 2021-05 (",
        1,
    ),
    (
        "backfill: an end before the start",
        "backfill.py",
        ["green", "2021-05", "2021-01"],
        {},
        "is before",
        2,
    ),
    (
        "train: the validation month missing",
        "train.py",
        ["green", "2021", "3"],
        {},
        "validation month green 2021-04 (training validates on the month after",
        2,
    ),
    (
        "train: MLflow down",
        "train.py",
        ["green", "2021", "2"],
        {"MLFLOW_TRACKING_URI": refused_url()},
        "did not answer",
        2,
    ),
    (
        "compile: an unknown model",
        "-m ride_duration.compile",
        ["models:/no-such-model/1"],
        {},
        "cannot find model models:/no-such-model/1",
        2,
    ),
]


@pytest.mark.parametrize(
    ("case", "command", "argv", "extra_env", "message", "exit_code"),
    COMMANDS,
    ids=[c[0] for c in COMMANDS],
)
def test_every_command_fails_with_one_documented_line(
    services: Services,
    trained: Trained,
    tmp_path: Path,
    case,
    command,
    argv,
    extra_env,
    message,
    exit_code,
):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for month in (2, 3):  # train.py green 2021 3 finds March, not April
        write_trips(inputs / file_name("green", 2021, month), make_trips("green", 2021, month, 300))
    (inputs / file_name("green", 2021, 5)).write_bytes(b"not parquet")
    work = tmp_path / "work"
    work.mkdir()
    env = {
        **services.env,
        "INPUT_URI_TEMPLATE": str(inputs / TEMPLATE),
        "OUTPUT_ROOT": str(tmp_path / "out"),
        **extra_env,
    }
    result = subprocess.run(
        [sys.executable, *command.split(), *argv]
        if command.startswith("-m")
        else [sys.executable, str(REPO / command), *argv],
        env=env | ({"PYTHONPATH": str(REPO)} if command.startswith("-m") else {}),
        cwd=work,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert_one_line_failure(result, message, exit_code, workdir=work)
    assert_documented(_error_line(result, message))


@pytest.mark.parametrize(
    "command",
    [
        "score.py",
        "backfill.py",
        "train.py",
        "-m ride_duration.compile",
        "-m ride_duration.migrate",
        "-m ride_duration.orchestration.server",
    ],
)
def test_help_answers_at_once_and_leaves_nothing(tmp_path: Path, command):
    argv = (
        [*command.split(), "--help"]
        if command.startswith("-m")
        else [str(REPO / command), "--help"]
    )
    result = subprocess.run(
        [sys.executable, *argv],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: "), result.stdout
    assert result.stderr == ""
    assert files_in(tmp_path) == set()


def test_debug_shows_the_traceback(services: Services, trained: Trained, tmp_path: Path):
    _write_inputs(tmp_path / "in")
    env = {**services.env, "INPUT_URI_TEMPLATE": str(tmp_path / "in" / TEMPLATE)}
    result = run_cli("score.py", "green", "2031", "1", "--debug", env=env, cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" in result.stderr
    assert "InputNotFoundError" in result.stderr


def test_generated_trip_file_reads(tmp_path: Path):
    # Guard for the cases above: the intact file really is a readable TLC-shaped file.
    path = write_trips(tmp_path / "x.parquet", make_trips("green", 2021, 3, 50))
    assert pq.read_table(path).num_rows == 50
