"""Drift as users meet it: `train.py` takes the reference profile, `score.py` measures each
month against it and refuses a drifted one, `ride-duration-profile` adds one to an old version."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.integration.conftest import TEMPLATE, Services, Trained, run_cli
from tests.support.failures import assert_one_line_failure
from tests.support.troubleshooting import assert_documented

COLUMNS = ["DOLocationID", "PULocationID", "actual_duration", "predicted_duration", "trip_distance"]


def shift_distances(source: Path, target: Path, factor: float) -> Path:
    """A copy of a trip file with every distance times `factor`."""
    table = pq.read_table(source)
    index = table.schema.get_field_index("trip_distance")
    scaled = pc.multiply(table["trip_distance"], pa.scalar(factor, table["trip_distance"].type))
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.set_column(index, "trip_distance", scaled), target)
    return target


def score(services: Services, month: int, inputs: Path, out: Path, **env: str):
    """`score.py green 2021 MONTH` reading `inputs`, writing to `out`."""
    return score_with(services, 2021, month, inputs, out, **env)


def score_with(services: Services, year: int, month: int, inputs: Path, out: Path, **env: str):
    """`score.py green YEAR MONTH` reading `inputs`, writing to `out`, with `env` set."""
    return run_cli(
        "score.py",
        "green",
        str(year),
        str(month),
        env={
            **services.env,
            "INPUT_URI_TEMPLATE": str(inputs / TEMPLATE),
            "OUTPUT_ROOT": str(out),
            **env,
        },
        cwd=out.parent,
    )


def run_profile(uri: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """`ride-duration-profile URI`, as the installed console script."""
    command = [str(Path(sys.executable).parent / "ride-duration-profile"), uri]
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=240)


def month_manifest(out: Path, month: int) -> dict:
    return json.loads(
        (out / f"taxi_type=green/year=2021/month={month:02d}/_manifest.json").read_text()
    )


def test_scoring_the_training_month_measures_no_drift(
    services: Services, trained: Trained, input_dir: Path, tmp_path: Path
):
    out = tmp_path / "out"
    result = score(services, 1, input_dir, out)
    assert result.returncode == 0, result.stderr
    drift = month_manifest(out, 1)["drift"]
    assert drift["reference"] == "profile.npz"
    assert sorted(drift["columns"]) == COLUMNS
    assert all(c["psi"] == 0 and c["js_distance"] == 0 for c in drift["columns"].values())
    row = pq.read_table(out / "_monitoring/green-2021-01.parquet").to_pylist()[0]
    assert (row["state"], row["has_reference"]) == ("published", True)


@pytest.mark.parametrize("month", [2, 3])
def test_a_month_whose_distances_grew_by_half_exits_2_and_publishes_nothing(
    services: Services, trained: Trained, input_dir: Path, tmp_path: Path, month: int
):
    name = TEMPLATE.format(taxi_type="green", year=2021, month=month)
    shifted = shift_distances(input_dir / name, tmp_path / "shifted" / name, 1.5)
    out = tmp_path / "out"
    result = score(services, month, shifted.parent, out, MAX_PSI="0.1")
    message = f"error: green 2021-{month:02d} failed its checks: trip_distance psi "
    assert_one_line_failure(result, message, 2)
    line = next(line for line in result.stderr.splitlines() if message in line)
    assert "> MAX_PSI 0.1" in line
    assert line.endswith("; nothing was published")
    assert_documented(line)
    # Nothing published: the month's row of the monitoring table says why.
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        f"_monitoring/green-2021-{month:02d}.parquet"
    ]
    # The month as it was passes the same limit.
    kept = score(services, month, input_dir, out, MAX_PSI="0.1")
    assert kept.returncode == 0, kept.stderr
    assert max(c["psi"] for c in month_manifest(out, month)["drift"]["columns"].values()) < 0.1


def test_profile_adds_a_reference_to_a_version_trained_without_one(
    services: Services, trained: Trained, input_dir: Path, tmp_path: Path
):
    """A version logged before profiles (its run says what it was trained on) gets one."""
    mlflow.set_tracking_uri(services.tracking_uri)
    client = mlflow.MlflowClient()
    name = "ride-duration-unprofiled"
    source = client.get_model_version("ride-duration", trained.version)
    pipeline = mlflow.sklearn.load_model(f"models:/ride-duration/{trained.version}")
    with mlflow.start_run() as run:
        mlflow.log_params(client.get_run(source.run_id).data.params)
        info = mlflow.sklearn.log_model(
            pipeline, name="model", serialization_format="cloudpickle", registered_model_name=name
        )
    version = str(info.registered_model_version)
    env = {**services.env, "INPUT_URI_TEMPLATE": str(input_dir / TEMPLATE)}
    out = tmp_path / "out"
    uri = f"models:/{name}/{version}"

    before = score(services, 2, input_dir, out, MODEL_URI=uri)
    assert before.returncode == 0, before.stderr
    assert month_manifest(out, 2)["drift"] == {"reference": None, "columns": {}}

    added = run_profile(uri, env, tmp_path)
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith(f"profiled {name}/{version} on ")
    assert "green 2021-01; logged as profile.npz" in added.stdout
    assert run.info.run_id  # logged in its own run, not the source's

    after = score(services, 2, input_dir, out, MODEL_URI=uri)
    assert after.returncode == 0, after.stderr
    drift = month_manifest(out, 2)["drift"]
    assert drift["reference"] == "profile.npz"
    assert sorted(drift["columns"]) == COLUMNS


def test_profile_refuses_a_version_whose_run_does_not_say_its_month(
    services: Services, trained: Trained, tmp_path: Path
):
    mlflow.set_tracking_uri(services.tracking_uri)
    pipeline = mlflow.sklearn.load_model(f"models:/ride-duration/{trained.version}")
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            serialization_format="cloudpickle",
            registered_model_name="ride-duration-no-params",
        )
    uri = f"models:/ride-duration-no-params/{info.registered_model_version}"
    result = run_profile(uri, services.env, tmp_path)
    message = "run does not say which taxi type and month it was trained on"
    assert_one_line_failure(result, message, 2, workdir=tmp_path)
    assert_documented(next(line for line in result.stderr.splitlines() if message in line))


def test_a_backfill_draws_the_report_of_its_months_and_links_it(
    services: Services, trained: Trained, input_dir: Path, tmp_path: Path, monkeypatch
):
    """In this process: its months are subflows, which draw none; the backfill draws one."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    from ride_duration.orchestration.flows import backfill

    out = tmp_path / "out"
    monkeypatch.setenv("OUTPUT_ROOT", str(out))
    rows = backfill(
        taxi_types=["green"],
        start="2021-02",
        end="2021-03",
        model_uri=f"models:/ride-duration/{trained.version}",
        input_uri_template=str(input_dir / TEMPLATE),
    )
    assert [row["state"] for row in rows] == ["completed", "completed"]
    monitoring = out / "_monitoring"
    assert sorted(p.name for p in monitoring.iterdir()) == [
        "green-2021-02.parquet",
        "green-2021-03.parquet",
    ]
    assert pd.read_parquet(monitoring)["month"].tolist() == ["2021-02", "2021-03"]  # one table
    reports = out / "_reports"
    assert sorted(p.name for p in reports.iterdir()) == ["report-green-2021-02-2021-03.html"]
    page = (reports / "report-green-2021-02-2021-03.html").read_text()
    assert "2021-02" in page
    assert "2021-03" in page

    async def links():
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["monitoring-green"])),
                sort=ArtifactSort.CREATED_DESC,
            )

    latest = asyncio.run(links())[0]
    link = f"file://{reports / 'report-green-2021-02-2021-03.html'}"
    assert latest.data == f"[monitoring report, green 2021-02 to 2021-03]({link})"
