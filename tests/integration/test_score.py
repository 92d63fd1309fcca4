"""The train and score entry points end to end, against real MLflow, S3 and Prefect servers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import mlflow
import pyarrow.parquet as pq
import pytest
import s3fs
from prefect.client.orchestration import get_client

from ride_duration.batch import manifest
from ride_duration.batch.paths import MonthOutput
from ride_duration.core.months import Month
from ride_duration.orchestration.flows import score
from tests.integration.conftest import (
    INPUT_BUCKET,
    OUTPUT_BUCKET,
    TEMPLATE,
    Services,
    Trained,
    run_cli,
)
from tests.support.tlc_fake import file_name, make_trips, write_trips

EXPECTED_COLUMNS = [
    "ride_id",
    "pickup_datetime",
    "PULocationID",
    "DOLocationID",
    "actual_duration",
    "predicted_duration",
    "diff",
    "model_version",
]


@pytest.fixture
def out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's OUTPUT_ROOT: runs may only write there (or in its _-folders)."""
    root = tmp_path / "out"
    monkeypatch.setenv("OUTPUT_ROOT", str(root))
    return root


def _version_file(summary: dict) -> Path:
    """The file under _versions/ where a local run's set is kept, as its manifest names it;
    it is the current set (the same bytes)."""
    content = manifest.current(
        MonthOutput(
            str(Path(summary["output"]).parents[3]),
            summary["taxi_type"],
            Month.parse(summary["month"]),
        )
    )
    assert content is not None
    version = Path(content["output"]["version_uri"])
    assert version.read_bytes() == Path(summary["output"]).read_bytes()
    return version


def test_train_registers_the_model_and_points_the_alias(services: Services, trained: Trained):
    mlflow.set_tracking_uri(services.tracking_uri)
    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias("ride-duration", "production")
    assert (version.version, version.run_id) == (trained.version, trained.run_id)
    run = client.get_run(trained.run_id)
    assert run.data.metrics["rmse"] == pytest.approx(trained.rmse, abs=1e-4)
    assert run.data.params["max_depth"] == "20"
    assert 0 < trained.rmse < 5  # generated durations follow distance closely


def test_score_cli_scores_the_named_month_into_its_partition(
    services: Services, trained: Trained, input_dir: Path, tmp_path: Path
):
    result = run_cli(
        "score.py",
        "green",
        "2021",
        "3",
        env={
            **services.env,
            "INPUT_URI_TEMPLATE": str(input_dir / TEMPLATE),
            "OUTPUT_ROOT": str(tmp_path / "out"),
        },
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    output = tmp_path / "out/taxi_type=green/year=2021/month=03/predictions.parquet"
    assert sorted(p.name for p in output.parent.iterdir()) == ["_manifest.json", output.name]
    kept = tmp_path / f"out/_versions/taxi_type=green/year=2021/month=03/{trained.run_id}.parquet"
    assert sorted(p.name for p in kept.parent.iterdir()) == [kept.name]
    assert kept.read_bytes() == output.read_bytes()
    table = pq.read_table(output)
    assert table.column_names == EXPECTED_COLUMNS
    frame = table.to_pandas()
    assert frame["ride_id"].is_unique
    assert set(frame["model_version"]) == {f"ride-duration/{trained.version}"}
    assert frame["pickup_datetime"].dt.month.eq(3).all()  # March itself, not February
    assert frame["actual_duration"].between(1, 60).all()
    assert (
        frame["diff"] - (frame["actual_duration"] - frame["predicted_duration"])
    ).abs().max() == 0
    log = result.stdout + result.stderr
    assert "score-green-2021-03" in log
    assert f"ride-duration/{trained.version}" in log
    assert "Traceback" not in log


def test_score_flow_reads_and_writes_s3_with_model_artifacts_on_s3(
    services: Services, trained: Trained, input_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("OUTPUT_ROOT", f"s3://{OUTPUT_BUCKET}")
    summary = score(
        taxi_type="green",
        year=2021,
        month=4,
        input_uri_template=f"s3://{INPUT_BUCKET}/{TEMPLATE}",
        output_root=f"s3://{OUTPUT_BUCKET}/_rides",
    )
    key = "_rides/taxi_type=green/year=2021/month=04/predictions.parquet"
    manifest_key = "_rides/taxi_type=green/year=2021/month=04/_manifest.json"
    version_key = f"_rides/_versions/taxi_type=green/year=2021/month=04/{trained.run_id}.parquet"
    assert summary["output"] == f"s3://{OUTPUT_BUCKET}/{key}"
    listed = services.s3().list_objects_v2(Bucket=OUTPUT_BUCKET, Prefix="_rides/")
    row_key = "_rides/_monitoring/green-2021-04.parquet"  # the month's row of the table
    assert sorted(item["Key"] for item in listed["Contents"]) == sorted(
        [manifest_key, key, version_key, row_key]
    )
    content = json.loads(
        services.s3().get_object(Bucket=OUTPUT_BUCKET, Key=manifest_key)["Body"].read()
    )
    head = services.s3().head_object(Bucket=OUTPUT_BUCKET, Key=key)
    assert content["output"]["bytes"] == head["ContentLength"]
    assert content["output"]["etag"] == head["ETag"].strip('"')
    assert content["output"]["version_uri"] == f"s3://{OUTPUT_BUCKET}/{version_key}"
    assert content["input"]["etag"]  # the input's version is recorded too
    s3 = s3fs.S3FileSystem()
    assert s3.cat_file(f"{OUTPUT_BUCKET}/{version_key}") == s3.cat_file(f"{OUTPUT_BUCKET}/{key}")
    table = pq.read_table(f"{OUTPUT_BUCKET}/{key}", filesystem=s3)
    assert table.num_rows == summary["rows_scored"] > 0
    assert summary["rows_read"] == summary["rows_scored"] + sum(summary["rows_dropped"].values())
    assert summary["rows_read"] == make_trips("green", 2021, 4).num_rows


@pytest.mark.parametrize(
    "uri_form",
    ["runs", "version", "alias", "latest", "logged-model-id", "s3-artifacts", "local-folder"],
)
def test_every_model_uri_form_gives_the_same_predictions(
    services: Services,
    trained: Trained,
    input_dir: Path,
    tmp_path: Path,
    out: Path,
    uri_form: str,
    monkeypatch: pytest.MonkeyPatch,
):
    mlflow.set_tracking_uri(services.tracking_uri)
    client = mlflow.MlflowClient()
    source = client.get_model_version("ride-duration", trained.version).source
    model_id = source.removeprefix("models:/")  # MLflow 3: the version's logged model
    s3_location = client.get_logged_model(model_id).artifact_location
    uri = {
        "runs": f"runs:/{trained.run_id}/model",
        "version": f"models:/ride-duration/{trained.version}",
        "alias": "models:/ride-duration@production",
        "latest": "models:/ride-duration/latest",
        "logged-model-id": source,
        "s3-artifacts": s3_location,
        "local-folder": None,
    }[uri_form]
    if uri_form == "local-folder":
        uri = mlflow.artifacts.download_artifacts(s3_location, dst_path=str(tmp_path / "model"))
    if uri_form in ("s3-artifacts", "local-folder"):
        # No tracking server is involved: point MLflow at a port nobody listens on.
        monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
        monkeypatch.setenv("TRUSTED_MODEL_PREFIXES", f"s3://mlflow-artifacts/,{tmp_path}/")
    summary = score(
        taxi_type="green",
        year=2021,
        month=3,
        model_uri=uri,
        input_uri_template=str(input_dir / TEMPLATE),
        output_root=str(out),
    )
    reference = _reference_predictions(services, trained, input_dir, tmp_path)
    predictions = pq.read_table(summary["output"].replace("file://", ""))
    # RandomForest sums its trees across threads in no fixed order: equal to the last ulps.
    assert predictions["predicted_duration"].to_pylist() == pytest.approx(reference, abs=1e-9)
    assert _version_file(summary).name == f"{trained.run_id}.parquet"


def _reference_predictions(services, trained, input_dir, tmp_path) -> list[float]:
    import numpy as np

    from ride_duration.core.months import Month
    from ride_duration.data import features
    from ride_duration.data.sources import read_trips

    mlflow.set_tracking_uri(services.tracking_uri)
    model = mlflow.sklearn.load_model(f"models:/ride-duration/{trained.version}")
    trips = read_trips(
        str(input_dir / file_name("green", 2021, 3)), "green", Month(2021, 3), 10_000
    ).table
    return np.asarray(model.predict(features.feature_records(trips)), dtype=float).tolist()


async def _artifact_markdown(key: str) -> str:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
            sort=ArtifactSort.CREATED_DESC,  # the key repeats: one artifact per run of the month
            limit=1,
        )
    return artifacts[0].data if artifacts else ""


def test_score_publishes_a_markdown_summary_artifact(
    services: Services, trained: Trained, input_dir: Path, out: Path
):
    import asyncio

    summary = score(
        taxi_type="green",
        year=2021,
        month=2,
        input_uri_template=str(input_dir / TEMPLATE),
        output_root=str(out),
    )
    markdown = asyncio.run(_artifact_markdown("score-green-2021-02"))
    assert f"| rows scored | {summary['rows_scored']:,} |" in markdown
    assert f"ride-duration/{trained.version}" in markdown


def test_an_alias_is_resolved_once_and_its_version_recorded(
    services: Services, trained: Trained, input_dir: Path, tmp_path: Path, out: Path
):
    env = {**services.env, "INPUT_URI_TEMPLATE": str(input_dir / TEMPLATE)}
    second = run_cli(
        "train.py",
        "green",
        "2021",
        "2",
        "--estimator",
        "linear",
        env={**env, "MODEL_ALIAS": "challenger"},
        cwd=tmp_path,
    )
    assert second.returncode == 0, second.stderr
    new_version = int(re.search(r"models:/ride-duration/(\d+)", second.stdout).group(1))
    assert new_version > int(trained.version)
    summary = score(
        taxi_type="green",
        year=2021,
        month=3,
        model_uri="models:/ride-duration@challenger",
        input_uri_template=str(input_dir / TEMPLATE),
        output_root=str(out),
    )
    assert summary["model_version"] == f"ride-duration/{new_version}"
    frame = pq.read_table(summary["output"]).to_pandas()
    assert set(frame["model_version"]) == {f"ride-duration/{new_version}"}
    assert _version_file(summary).name == f"{summary['model_run_id']}.parquet"
    assert summary["model_run_id"] != trained.run_id


@pytest.mark.parametrize(
    ("taxi_type", "variant"),
    [("green", "B"), ("yellow", "A"), ("fhvhv", "A")],
)
def test_other_layouts_score_with_the_green_model(
    services: Services, trained: Trained, tmp_path: Path, out: Path, taxi_type: str, variant: str
):
    write_trips(
        tmp_path / "in" / file_name(taxi_type, 2022, 5),
        make_trips(taxi_type, 2022, 5, 800, variant=variant),
    )
    summary = score(
        taxi_type=taxi_type,
        year=2022,
        month=5,
        input_uri_template=str(tmp_path / "in" / TEMPLATE),
        output_root=str(out),
    )
    assert summary["rows_scored"] > 700
    frame = pq.read_table(summary["output"]).to_pandas()
    assert frame["PULocationID"].dtype == "int64"


def test_a_registered_version_whose_files_are_elsewhere_is_not_loaded(services: Services):
    """The registry is trusted for its names, not for wherever an entry says the files are."""
    from ride_duration.core.errors import ModelNotTrustedError
    from ride_duration.model.resolve import resolve_model

    planted = "s3://tlc-trips/planted-model"  # a bucket anyone who uploads trips can write to
    mlflow.set_tracking_uri(services.tracking_uri)
    client = mlflow.MlflowClient()
    client.create_registered_model("planted")
    version = client.create_model_version("planted", source=planted)
    with pytest.raises(ModelNotTrustedError) as refused:
        resolve_model(
            f"models:/planted/{version.version}", ("models:/", "runs:/", "s3://mlflow-artifacts/")
        )
    assert f"has its files at {planted}" in str(refused.value)
