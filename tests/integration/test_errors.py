"""Bad input through the real CLI: exit code 2, one line saying what is wrong, nothing written."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.integration.conftest import TEMPLATE, Services, Trained, run_cli
from tests.support.servers import free_port
from tests.support.tlc_fake import file_name, make_trips, write_trips


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


@pytest.mark.parametrize(("case", "argv", "extra_env", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_with_one_clear_line_and_writes_nothing(
    services: Services, trained: Trained, tmp_path: Path, case, argv, extra_env, message
):
    _write_inputs(tmp_path / "in")
    env = {
        **services.env,
        "INPUT_URI_TEMPLATE": str(tmp_path / "in" / TEMPLATE),
        "OUTPUT_ROOT": str(tmp_path / "out"),
        **extra_env,
    }
    result = run_cli("score.py", *argv, env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    error_lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(error_lines) == 1, result.stderr
    assert message in error_lines[0]
    # said once: Prefect's own lines about the same failure stay in its run's logs
    assert (result.stdout + result.stderr).count(message) == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    out = tmp_path / "out"
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]


def test_an_unreachable_tracking_server_fails_after_bounded_retries(
    services: Services, tmp_path: Path
):
    dead = f"http://127.0.0.1:{free_port()}"
    env = {**services.env, "MLFLOW_TRACKING_URI": dead, "OUTPUT_ROOT": str(tmp_path / "out")}
    result = run_cli("score.py", "green", "2021", "3", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: MLflow tracking server {dead} did not answer (Connection refused): start it or "
        "set MLFLOW_TRACKING_URI"
    )
    assert "Retry" not in result.stdout + result.stderr  # urllib3's own lines stay quiet
    assert "Traceback" not in result.stdout + result.stderr


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
