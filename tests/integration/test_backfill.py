"""The backfill flow in-process (subflows), against the session's MLflow, S3 and Prefect API."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterName,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.sorting import ArtifactSort, FlowRunSort, LogSort

from ride_duration.core.errors import BackfillFailedError
from ride_duration.monitoring.profile import COLUMNS
from ride_duration.orchestration.flows import backfill
from tests.integration.conftest import TEMPLATE, Services, Trained
from tests.support.tlc_fake import file_name


@pytest.fixture
def inputs(input_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the generated months 2021-01..04."""
    folder = tmp_path / "in"
    shutil.copytree(input_dir, folder)
    return folder


@pytest.fixture
def output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's OUTPUT_ROOT: runs may only write there (or in its _-folders)."""
    root = tmp_path / "out"
    monkeypatch.setenv("OUTPUT_ROOT", str(root))
    return root


def _current_sets(output: Path) -> list[Path]:
    """Each month's current set: the one data file of its partition."""
    return sorted(output.glob("taxi_type=green/year=*/month=*/*.parquet"))


def _kept_sets(output: Path) -> list[Path]:
    """Each model version's set of each month, kept under _versions/."""
    return sorted(output.glob("_versions/taxi_type=green/year=*/month=*/*.parquet"))


def _run(inputs: Path, output: Path, **options) -> list[dict]:
    return backfill(
        taxi_types=["green"],
        start=options.pop("start", "2021-01"),
        end=options.pop("end", "2021-04"),
        input_uri_template=str(inputs / TEMPLATE),
        output_root=str(output),
        **options,
    )


async def _read(key: str | None = None, run_name: str | None = None):
    async with get_client() as client:
        if key:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                sort=ArtifactSort.CREATED_DESC,
            )
        return await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[run_name]))
        )


def test_months_are_scored_once_and_a_rerun_scores_only_what_is_missing(
    services: Services, trained: Trained, inputs: Path, output: Path
):
    rows = _run(inputs, output)
    assert [(r["month"], r["state"]) for r in rows] == [
        (f"2021-0{m}", "completed") for m in range(1, 5)
    ]
    assert all(r["rows_scored"] > 0 for r in rows)
    files = _current_sets(output)
    assert [(f.parent.name, f.name) for f in files] == [
        (f"month=0{m}", "predictions.parquet") for m in range(1, 5)
    ]
    kept = _kept_sets(output)
    assert [(f.parent.name, f.name) for f in kept] == [
        (f"month=0{m}", f"{trained.run_id}.parquet") for m in range(1, 5)
    ]
    rows = sorted((output / "_monitoring").glob("*.parquet"))  # the monitoring table's
    assert [f.name for f in rows] == [f"green-2021-0{m}.parquet" for m in range(1, 5)]
    assert sorted(output.rglob("*.parquet")) == sorted(files + kept + rows)

    again = _run(inputs, output)
    assert {r["state"] for r in again} == {"done"}

    files[2].unlink()
    third = _run(inputs, output)
    assert [r["state"] for r in third] == ["done", "done", "completed", "done"]
    assert files[2].exists()


def test_the_backfill_publishes_a_table_artifact_of_its_months(
    services: Services, trained: Trained, inputs: Path, output: Path
):
    _run(inputs, output, start="2021-02", end="2021-03")
    artifacts = asyncio.run(_read(key="backfill-green-2021-02-2021-03"))
    table = artifacts[0].data
    assert '"month": "2021-02"' in table
    assert '"state": "completed"' in table
    assert '"rows_scored"' in table
    assert '"output"' in table
    assert '"seconds"' in table
    rows = json.loads(table)
    assert [row["month"] for row in rows] == ["2021-02", "2021-03"]
    for row in rows:  # the quality of each month, so drift across months shows at a glance
        assert 0 < row["rmse"] < 10
        assert 0 < row["mae"] <= row["rmse"]
        assert 0 <= row["unknown_pair_share"] < 1
        # and its largest drift from the model's reference profile
        assert row["drift_column"] in COLUMNS
        assert row["psi"] >= 0
        assert 0 <= row["js_distance"] <= 1
        assert row["drift"].startswith(f"{row['psi']:.2f} {row['drift_column']}")


async def _logs_of_latest(run_name: str) -> list[str]:
    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[run_name])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )
        logs = await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[runs[0].id])),
            sort=LogSort.TIMESTAMP_ASC,
        )
    return [log.message for log in logs]


def test_the_backfill_moves_a_progress_artifact_to_100_and_logs_each_month(
    services: Services, trained: Trained, inputs: Path, output: Path
):
    _run(inputs, output, start="2021-01", end="2021-03", mode="all")
    progress = asyncio.run(_read(key="backfill-green-2021-01-2021-03-progress"))[0]
    assert progress.type == "progress"
    assert progress.data == 100
    deadline = time.monotonic() + 30
    while True:  # logs reach the API in batches, a moment after the flow returns
        messages = asyncio.run(_logs_of_latest("backfill-2021-01-2021-03"))
        lines = [message for message in messages if "months done" in message]
        if len(lines) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert [line.split(":")[0] for line in lines] == [f"green 2021-0{m}" for m in (1, 2, 3)]
    assert "1 of 3 months done, about" in lines[0]
    assert lines[-1].endswith("3 of 3 months done")


def test_a_failed_month_does_not_stop_the_others_and_mode_failed_reruns_it(
    services: Services, trained: Trained, inputs: Path, output: Path
):
    good = (inputs / file_name("green", 2021, 2)).read_bytes()
    (inputs / file_name("green", 2021, 2)).write_bytes(b"garbage" * 100)
    with pytest.raises(BackfillFailedError) as failed:
        _run(inputs, output)
    assert str(failed.value).startswith("1 of 4 months failed: green 2021-02 (")
    assert "is not a readable parquet file" in str(failed.value)
    months = sorted(p.parent.name for p in _current_sets(output))
    assert months == ["month=01", "month=03", "month=04"]
    sets = [p for p in output.rglob("*.parquet") if "_monitoring" not in p.parts]
    assert sorted(p.parent.name for p in sets) == sorted(months * 2)
    # The failed month has no row of the monitoring table: it was never checked.
    rows = sorted(p.name for p in (output / "_monitoring").glob("*.parquet"))
    assert rows == ["green-2021-01.parquet", "green-2021-03.parquet", "green-2021-04.parquet"]

    (inputs / file_name("green", 2021, 2)).write_bytes(good)
    rows = _run(inputs, output, mode="failed")
    assert [r["state"] for r in rows] == ["done", "completed", "done", "done"]
    assert re.fullmatch(r"current since \d{4}-\d{2}-\d{2} \d{2}:\d{2}", rows[0]["reason"])


def test_a_dry_run_says_what_would_happen_and_writes_nothing(
    services: Services, trained: Trained, inputs: Path, output: Path
):
    [scored] = _run(inputs, output, start="2021-01", end="2021-01")
    before = sorted(output.rglob("*"))
    (inputs / file_name("green", 2021, 4)).unlink()
    plan = _run(inputs, output, start="2021-01", end="2021-05", dry_run=True)
    assert [(p["month"], p["state"]) for p in plan] == [
        ("2021-01", "done"),
        ("2021-02", "would score"),
        ("2021-03", "would score"),
        ("2021-04", "not published"),
        ("2021-05", "not published"),
    ]
    assert all(set(p) == set(scored) for p in plan)  # the rows of a real run, in shape
    # The done month shows its current set's model and rows.
    assert (plan[0]["model_version"], plan[0]["rows_scored"]) == (
        scored["model_version"],
        scored["rows_scored"],
    )
    assert plan[3]["reason"].startswith("no trip file at ")
    assert sorted(output.rglob("*")) == before


def test_an_alias_is_pinned_to_one_version_for_every_month(
    services: Services, trained: Trained, inputs: Path, output: Path
):
    _run(
        inputs,
        output,
        start="2021-03",
        end="2021-04",
        mode="all",
        model_uri="models:/ride-duration@production",
    )
    for month in ("2021-03", "2021-04"):
        runs = asyncio.run(_read(run_name=f"score-green-{month}"))
        newest = max(runs, key=lambda r: r.expected_start_time)
        assert newest.parameters["model_uri"] == f"models:/ride-duration/{trained.version}"
        assert newest.parent_task_run_id is not None  # a subflow of the backfill


def test_a_dry_run_loads_neither_mlflow_nor_scikit_learn_nor_pandas(
    services: Services, trained: Trained, inputs: Path, tmp_path: Path
):
    import subprocess
    import sys

    from tests.conftest import HEAVY, REPO

    arguments = ["green", "2021-01", "2021-03", "--dry-run"]
    arguments += ["--input-uri-template", str(inputs / TEMPLATE), "--output-root", str(tmp_path)]
    result = subprocess.run(
        [sys.executable, "-X", "importtime", str(REPO / "backfill.py"), *arguments],
        env={**services.env, "OUTPUT_ROOT": str(tmp_path)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "would score" in result.stdout
    imported = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert not imported & (set(HEAVY) - {"prefect"}), sorted(imported & set(HEAVY))
