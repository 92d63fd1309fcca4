"""The predictions as a dataset a reader can trust, through the commands users run: one set per
month for every documented reader, experiments kept out, stale months found and re-scored
alone, every month's state, the table at the end of a failed backfill, a killed run found,
and a tree written by the code before moved into today's layout."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

from ride_duration.batch import manifest
from ride_duration.batch.paths import MonthOutput
from ride_duration.core.months import Month
from tests.conftest import REPO
from tests.integration.conftest import TEMPLATE, Services, Trained, run_cli
from tests.support.tlc_fake import file_name, make_trips, write_trips

CANDIDATE = "ride-duration-candidate"
# The last commit whose output layout put every model version's file in the month's folder.
LAYOUT_BEFORE = "95cc246"
# The twelve months of ../shared/data/tlc.
TWELVE = [(2021, m) for m in range(1, 6)] + [(2022, m) for m in (1, 2, 3)]
TWELVE += [(2023, m) for m in (1, 2, 3, 4)]


@pytest.fixture(scope="module")
def candidate(services: Services, input_dir: Path, tmp_path_factory) -> str:
    """A second model (a linear one), registered under its own name: its label."""
    env = {
        **services.env,
        "INPUT_URI_TEMPLATE": str(input_dir / TEMPLATE),
        "MODEL_NAME": CANDIDATE,
        "MODEL_ALIAS": "candidate",
    }
    cwd = tmp_path_factory.mktemp("candidate")
    result = run_cli("train.py", "green", "2021", "1", "--estimator", "linear", env=env, cwd=cwd)
    assert result.returncode == 0, result.stderr[-2000:]
    return f"{CANDIDATE}/1"


@pytest.fixture(scope="module")
def trips(input_dir: Path, tmp_path_factory) -> Path:
    """The twelve months: the real ones when TLC_DATA_DIR holds them, else generated."""
    real = os.environ.get("TLC_DATA_DIR")
    folder = tmp_path_factory.mktemp("twelve")
    for year, month in TWELVE:
        name = file_name("green", year, month)
        if real and Path(real, name).is_file():
            shutil.copy(Path(real, name), folder / name)
        else:
            write_trips(folder / name, make_trips("green", year, month, rows=3_000))
    return folder


def env_for(services: Services, trips: Path, root: Path, **more: str) -> dict[str, str]:
    return {
        **services.env,
        "INPUT_URI_TEMPLATE": str(trips / TEMPLATE),
        "OUTPUT_ROOT": str(root),
        **more,
    }


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one error line a failed command printed."""
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    return line


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_documented_reader_sees_one_set_per_month_from_the_last_model(
    services: Services, trained: Trained, candidate: str, trips: Path, tmp_path: Path
):
    root = tmp_path / "output"
    env = env_for(services, trips, Path("output"))
    ok(run_cli("score.py", "green", "2021", "3", env=env, cwd=tmp_path))
    second = ["--model-uri", f"models:/{CANDIDATE}@candidate"]
    ok(run_cli("score.py", "green", "2021", "3", *second, env=env, cwd=tmp_path))
    experiment = ["--output-root", "output/_experiments"]
    ok(run_cli("score.py", "green", "2021", "3", *second, *experiment, env=env, cwd=tmp_path))
    refused = run_cli(
        "score.py",
        "green",
        "2021",
        "3",
        "--output-root",
        "output/experiments",
        env=env,
        cwd=tmp_path,
    )
    assert refused.returncode == 2
    assert error_line(refused).startswith("error: output_root output/experiments")
    assert "such as output/_experiments" in refused.stderr

    current = manifest.current(MonthOutput(str(root), "green", Month(2021, 3)))
    assert current is not None
    rows = current["rows_scored"]
    if Path(trips / file_name("green", 2021, 3)).stat().st_size == 1_474_538:  # the real file
        assert rows == 80_372
    predictions = ds.dataset(root, partitioning="hive")  # noqa: F841 - DuckDB reads it by name
    glob = f"{root}/*/*/*/*.parquet"
    readers = {
        "pandas": pd.read_parquet(root)["model_version"],
        "pyarrow": ds.dataset(root, partitioning="hive").to_table()["model_version"].to_pandas(),
        "duckdb": duckdb.sql(
            f"SELECT model_version FROM read_parquet('{glob}', hive_partitioning = true)"
        ).df()["model_version"],
        "duckdb over pyarrow": duckdb.sql("SELECT model_version FROM predictions").df()[
            "model_version"
        ],
    }
    for name, versions in readers.items():
        assert (name, len(versions), set(versions)) == (name, rows, {candidate})
    every_version = pd.read_parquet(root / "_versions").groupby("model_version").size()
    assert dict(every_version) == {f"ride-duration/{trained.version}": rows, candidate: rows}
    experiment_read = pd.read_parquet(root / "_experiments")
    assert (len(experiment_read), set(experiment_read["model_version"])) == (rows, {candidate})


def backfill_cli(env: dict[str, str], cwd: Path, *arguments: str) -> subprocess.CompletedProcess:
    return run_cli("backfill.py", "green", "2021-01", "2023-04", *arguments, env=env, cwd=cwd)


def table_rows(stdout: str) -> dict[str, list[str]]:
    """The backfill's closing table, by month: its cells split on two spaces or more."""
    lines = stdout.strip().splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("taxi type"))
    rows = {}
    for line in lines[start + 1 :]:
        cells = [cell for cell in line.split("  ") if cell.strip()]
        rows[cells[1].strip()] = [cell.strip() for cell in cells]
    return rows


def test_a_rewritten_input_makes_exactly_its_month_stale_and_only_it_is_rewritten(
    services: Services, trained: Trained, trips: Path, tmp_path: Path
):
    inputs = tmp_path / "in"
    shutil.copytree(trips, inputs)
    root = tmp_path / "output"
    env = env_for(services, inputs, root)
    first = table_rows(ok(backfill_cli(env, tmp_path)))
    published = [f"{y}-{m:02d}" for y, m in TWELVE]
    assert sorted(m for m, row in first.items() if row[2] == "completed") == published
    assert sum(row[2] == "not published" for row in first.values()) == 28 - 12

    files = sorted(root.rglob("*.parquet"))
    before = {path: sha(path) for path in files}
    changed = inputs / file_name("green", 2022, 2)
    table = pq.read_table(changed)
    order = np.random.default_rng(0).permutation(table.num_rows)
    size_before = changed.stat().st_size
    pq.write_table(table.take(order), changed)

    dry = table_rows(ok(backfill_cli(env, tmp_path, "--mode", "stale", "--dry-run")))
    would = {month: row for month, row in dry.items() if row[2] == "would score"}
    assert list(would) == ["2022-02"]
    reason = would["2022-02"][-1]
    size_after = changed.stat().st_size
    if size_after != size_before:
        assert reason == f"stale: input changed (size {size_before:,} → {size_after:,})"
    else:
        assert reason.startswith("stale: input changed (modified ")

    rerun = table_rows(ok(backfill_cli(env, tmp_path, "--mode", "stale")))
    assert [m for m, row in rerun.items() if row[2] == "completed"] == ["2022-02"]
    after = {path: sha(path) for path in sorted(root.rglob("*.parquet"))}
    rewritten = sorted(str(p.relative_to(root)) for p in files if after[p] != before[p])
    assert rewritten == [
        "_monitoring/green-2022-02.parquet",  # its row of the monitoring table
        f"_versions/taxi_type=green/year=2022/month=02/{trained.run_id}.parquet",
        "taxi_type=green/year=2022/month=02/predictions.parquet",
    ]


def test_status_shows_every_month_s_state_in_one_table(
    services: Services, trained: Trained, input_dir: Path, tmp_path: Path
):
    inputs = tmp_path / "in"
    shutil.copytree(input_dir, inputs)  # green 2021-01..04
    (inputs / file_name("green", 2021, 2)).write_bytes(b"garbage" * 100)
    root = tmp_path / "output"
    env = env_for(services, inputs, root)
    ok(run_cli("score.py", "green", "2021", "3", env=env, cwd=tmp_path))
    ok(run_cli("score.py", "green", "2021", "4", env=env, cwd=tmp_path))
    failed = run_cli("score.py", "green", "2021", "2", env=env, cwd=tmp_path)
    assert failed.returncode == 2
    grown = make_trips("green", 2021, 4, rows=2_100)
    write_trips(inputs / file_name("green", 2021, 4), grown)

    result = run_cli(
        "backfill.py", "green,fhv", "2021-01", "2021-05", "--status", env=env, cwd=tmp_path
    )
    lines = ok(result).strip().splitlines()
    header = lines.index(next(line for line in lines if line.startswith("taxi type")))
    assert lines[header].split() == [
        "taxi",
        "type",
        "month",
        "state",
        "model",
        "rows",
        "rmse",
        "drift",
        "(psi)",
        "published",
        "(UTC)",
        "reason",
    ]
    states = [(line.split()[0], line.split()[1], line.split()[2]) for line in lines[header + 1 :]]
    assert states == [
        ("green", "2021-01", "missing"),
        ("green", "2021-02", "failed"),
        ("green", "2021-03", "done"),
        ("green", "2021-04", "stale"),
        ("green", "2021-05", "not"),
        ("fhv", "2021-01", "unscorable"),
        ("fhv", "2021-02", "unscorable"),
        ("fhv", "2021-03", "unscorable"),
        ("fhv", "2021-04", "unscorable"),
        ("fhv", "2021-05", "unscorable"),
    ]
    text = "\n".join(lines[header:])
    assert "is not a readable parquet file" in text
    assert "input changed (size " in text
    assert "fhv trips have no trip_distance column, but the model needs it" in text
    assert f"ride-duration/{trained.version}" in text
    done = lines[header + 3]  # green 2021-03: its rmse, and its largest drift from the reference
    assert re.search(
        r"  \d+\.\d\d  \d+\.\d\d (trip_distance|\w+_duration|\w+LocationID)( !)?  ", done
    )


def test_a_failed_backfill_ends_with_its_table(
    services: Services, trained: Trained, input_dir: Path, tmp_path: Path
):
    inputs = tmp_path / "in"
    shutil.copytree(input_dir, inputs)
    (inputs / file_name("green", 2021, 2)).write_bytes(b"garbage" * 100)
    env = env_for(services, inputs, tmp_path / "output")
    result = run_cli("backfill.py", "green", "2021-01", "2021-03", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert error_line(result).startswith("error: 1 of 3 months failed")
    rows = table_rows(result.stdout)
    assert [(m, row[2]) for m, row in rows.items()] == [
        ("2021-01", "completed"),
        ("2021-02", "failed"),
        ("2021-03", "completed"),
    ]
    assert "is not a readable parquet file" in rows["2021-02"][-1]
    assert result.stdout.strip().splitlines()[-1].split()[:3] == ["green", "2021-03", "completed"]


async def _runs(name: str) -> list:
    async with get_client() as client:
        return await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name]))
        )


def test_a_run_killed_without_a_word_is_failed_for_status_and_mode_failed(
    services: Services, trained: Trained, input_dir: Path, tmp_path: Path
):
    inputs = tmp_path / "in"
    inputs.mkdir()
    march = inputs / file_name("green", 2020, 3)  # a month no other test scores
    os.mkfifo(march)  # the run blocks opening it, mid-run
    env = env_for(services, inputs, tmp_path / "output", LOCK_STALE_SECONDS="4")
    victim = subprocess.Popen(
        [sys.executable, str(REPO / "score.py"), "green", "2020", "3"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not any(
            r.state and r.state.is_running() for r in asyncio.run(_runs("score-green-2020-03"))
        ):
            assert time.monotonic() < deadline
            assert victim.poll() is None
            time.sleep(0.5)
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait()
    time.sleep(4.5)  # past LOCK_STALE_SECONDS: a run without its lock by now is gone
    assert [r.state.type.value for r in asyncio.run(_runs("score-green-2020-03"))] == ["RUNNING"]
    status = run_cli(
        "backfill.py", "green", "2020-03", "2020-03", "--status", env=env, cwd=tmp_path
    )
    last = ok(status).strip().splitlines()[-1]
    assert last.split()[:3] == ["green", "2020-03", "failed"]
    assert "its run died without a word" in last

    march.unlink()
    write_trips(march, make_trips("green", 2020, 3, rows=500))
    rerun = run_cli(
        "backfill.py", "green", "2020-03", "2020-03", "--mode", "failed", env=env, cwd=tmp_path
    )
    assert ok(rerun).strip().splitlines()[-1].split()[:3] == ["green", "2020-03", "completed"]


@pytest.mark.skipif(
    subprocess.run(
        ["git", "-C", str(REPO), "cat-file", "-e", f"{LAYOUT_BEFORE}^{{commit}}"],
        capture_output=True,
    ).returncode
    != 0,
    reason=f"this checkout has no git history with {LAYOUT_BEFORE}, the code before the layout",
)
def test_a_tree_written_by_the_code_before_is_migrated_by_one_command(
    services: Services, trained: Trained, candidate: str, input_dir: Path, tmp_path: Path
):
    old_code = tmp_path / "old"
    old_code.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", LAYOUT_BEFORE], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(old_code)], input=archive.stdout, check=True)
    root = tmp_path / "output"
    env = env_for(services, input_dir, root)

    def old(*arguments: str) -> None:
        result = subprocess.run(
            [sys.executable, str(old_code / "score.py"), *arguments],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert result.returncode == 0, result.stderr[-2000:]

    old("green", "2021", "3")
    old("green", "2021", "3", "--model-uri", f"models:/{CANDIDATE}@candidate")
    old("green", "2021", "4")
    march = root / "taxi_type=green/year=2021/month=03"
    assert len(list(march.glob("*.parquet"))) == 2  # both versions, read together
    leftover = march / "0123456789abcdef0123456789abcdef.parquet"  # a file no manifest vouches for
    shutil.copy(next(march.glob("*.parquet")), leftover)

    refused = run_cli("score.py", "green", "2021", "3", env=env, cwd=tmp_path)
    assert refused.returncode == 2
    assert "python -m ride_duration.migrate" in error_line(refused)

    migrate = [sys.executable, "-m", "ride_duration.migrate", str(root)]
    done = subprocess.run(migrate, env=env, cwd=REPO, capture_output=True, text=True)
    said = ok(done)
    assert "month=03: 2 version(s) kept" in said
    assert "kept without a manifest: 0123456789abcdef0123456789abcdef.parquet" in said
    assert "month=04: 1 version(s) kept" in said
    versions = pd.read_parquet(root).groupby(["month", "model_version"], observed=True).size()
    rows_03 = manifest.current(MonthOutput(str(root), "green", Month(2021, 3)))["rows_scored"]
    rows_04 = manifest.current(MonthOutput(str(root), "green", Month(2021, 4)))["rows_scored"]
    assert dict(versions) == {
        (3, candidate): rows_03,
        (4, f"ride-duration/{trained.version}"): rows_04,
    }
    assert sorted(p.name for p in march.iterdir()) == ["_manifest.json", "predictions.parquet"]
    kept = sorted(p.name for p in (root / "_versions/taxi_type=green/year=2021/month=03").iterdir())
    assert kept == sorted(
        [f"{trained.run_id}.parquet", leftover.stem + ".unverified.parquet"]
        + [
            p
            for p in kept
            if p.endswith(".parquet")
            and p not in (f"{trained.run_id}.parquet",)
            and "unverified" not in p
        ]
    )
    again = subprocess.run(migrate, env=env, cwd=REPO, capture_output=True, text=True)
    assert ok(again).strip() == f"nothing to migrate under {root}"
    ok(run_cli("score.py", "green", "2021", "3", env=env, cwd=tmp_path))
