"""Real TLC green months from TLC_DATA_DIR: train on 2021-01, score all twelve months.

The files differ in dtypes (int32 vs int64 ids, double vs int64 codes, a null-typed column),
carry stray pickups from other months and a block of null rows; every one must score.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from ride_duration.orchestration.flows import score
from tests.integration.conftest import TEMPLATE, Services, run_cli
from tests.support.docs import Example, conforms, example_answers

pytestmark = pytest.mark.tlc

MONTHS = [
    (2021, 1),
    (2021, 2),
    (2021, 3),
    (2021, 4),
    (2021, 5),
    (2022, 1),
    (2022, 2),
    (2022, 3),
    (2023, 1),
    (2023, 2),
    (2023, 3),
    (2023, 4),
]
MODEL = "ride-duration-tlc"  # its own name, so other tests' alias stays put


@pytest.fixture(scope="module")
def real_model(services: Services, tlc_data_dir: Path, tmp_path_factory) -> dict:
    env = {
        **services.env,
        "INPUT_URI_TEMPLATE": str(tlc_data_dir / TEMPLATE),
        "MODEL_NAME": MODEL,
    }
    result = run_cli("train.py", "green", "2021", "1", env=env, cwd=tmp_path_factory.mktemp("t"))
    assert result.returncode == 0, result.stderr
    return {
        "run_id": re.search(r"run_id: (\w+)", result.stdout).group(1),
        "rmse": float(re.search(r"rmse: ([\d.]+)", result.stdout).group(1)),
    }


def test_random_forest_on_january_2021_matches_the_course(real_model: dict):
    # The course's RandomForest on green 2021-01, validated on 2021-02, reaches about 6.75.
    assert 6.5 < real_model["rmse"] < 7.0


@pytest.mark.parametrize("example", example_answers(), ids=lambda example: example.key)
def test_the_pages_example_answers_are_the_demo_models(
    real_model: dict, monkeypatch: pytest.MonkeyPatch, example: Example
):
    """`make demo` trains this very model (green 2021-01, real, the same seed): each answer a
    page shows is what the web service or the stream scorer answers with it, to the digit."""
    from ride_duration.core.settings import Settings
    from ride_duration.model.service import load_for_serving
    from ride_duration.online import stream, web

    monkeypatch.setenv("MODEL_URI", f"models:/{MODEL}@production")
    model = load_for_serving(Settings.from_env())
    method, path, body = example.request
    if method == "KINESIS":
        event = stream.kinesis_event([json.dumps(body).encode()])
        answer = stream.handle(event, model, None)["predictions"][0]
    else:
        client = web.create_app(web.Loaded(model)).test_client()
        answer = client.open(path, method=method, json=body).get_json()
    assert conforms(example.answer, answer, exact=True) == [], answer


@pytest.fixture
def out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's OUTPUT_ROOT: runs may only write there (or in its _-folders)."""
    monkeypatch.setenv("OUTPUT_ROOT", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize(("year", "month"), MONTHS, ids=[f"{y}-{m:02d}" for y, m in MONTHS])
def test_every_real_month_scores(
    real_model: dict, tlc_data_dir: Path, out: Path, year: int, month: int
):
    summary = score(
        taxi_type="green",
        year=year,
        month=month,
        model_uri=f"models:/{MODEL}@production",
        input_uri_template=str(tlc_data_dir / TEMPLATE),
        output_root=str(out),
    )
    source = pq.read_table(
        tlc_data_dir / f"green_tripdata_{year:04d}-{month:02d}.parquet",
        columns=["lpep_pickup_datetime"],
    )["lpep_pickup_datetime"]
    in_month = pc.and_(pc.equal(pc.year(source), year), pc.equal(pc.month(source), month))
    assert summary["rows_read"] == len(source)
    assert summary["rows_dropped"]["pickup_outside_month"] == len(source) - pc.sum(in_month).as_py()
    assert summary["rows_read"] == summary["rows_scored"] + sum(summary["rows_dropped"].values())
    assert summary["rows_scored"] > 0.9 * len(source)

    table = pq.read_table(summary["output"])
    assert table.schema.field("PULocationID").type == "int64"
    assert pc.all(pc.equal(pc.month(table["pickup_datetime"]), month)).as_py()
    assert len(pc.unique(table["ride_id"])) == table.num_rows
    diff = table["diff"].to_numpy()
    assert np.sqrt(np.mean(diff**2)) < 12  # the model still predicts, months later
    if (year, month) == (2021, 2):
        # Scoring the validation month reproduces the validation RMSE of training exactly.
        assert np.sqrt(np.mean(diff**2)) == pytest.approx(real_model["rmse"], abs=1e-4)

    # Drift from the training month (2021-01): none on itself; little within 2021; and the
    # city's change by 2022 is plain in the pickup zones (measured PSI 0.72 to 1.15).
    drift = json.loads(Path(summary["manifest"]).read_text())["drift"]
    psi = {column: figures["psi"] for column, figures in drift["columns"].items()}
    assert drift["reference"] == "profile.npz"
    if (year, month) == (2021, 1):
        assert set(psi.values()) == {0.0}
    elif year == 2021:
        assert max(psi.values()) < 0.1
    else:
        assert psi["PULocationID"] > 0.25  # above WARN_PSI: published, with a warning


@pytest.mark.parametrize("month", [2, 3, 4, 5])
def test_a_real_month_whose_distances_grew_by_half_is_refused_and_as_it_was_passes(
    real_model: dict, services: Services, tlc_data_dir: Path, tmp_path: Path, month: int
):
    from tests.integration.test_monitoring import score_with, shift_distances

    name = TEMPLATE.format(taxi_type="green", year=2021, month=month)
    shifted = shift_distances(tlc_data_dir / name, tmp_path / "shifted" / name, 1.5)
    out = tmp_path / "out"
    env = {"MAX_PSI": "0.1", "MODEL_URI": f"models:/{MODEL}@production"}
    refused = score_with(services, 2021, month, shifted.parent, out, **env)
    assert refused.returncode == 2, refused.stderr
    assert f"green 2021-{month:02d} failed its checks: trip_distance psi " in refused.stderr
    published = [p.relative_to(out) for p in out.rglob("*") if p.is_file()]
    assert published == [Path(f"_monitoring/green-2021-{month:02d}.parquet")]  # why, only
    kept = score_with(services, 2021, month, tlc_data_dir, out, **env)
    assert kept.returncode == 0, kept.stderr


def test_backfilling_five_real_months_then_again_then_after_deleting_one(
    real_model: dict, tlc_data_dir: Path, out: Path
):
    from ride_duration.orchestration.flows import backfill

    def run() -> list[str]:
        rows = backfill(
            taxi_types=["green"],
            start="2021-01",
            end="2021-05",
            model_uri=f"models:/{MODEL}@production",
            input_uri_template=str(tlc_data_dir / TEMPLATE),
            output_root=str(out),
        )
        return [row["state"] for row in rows]

    assert run() == ["completed"] * 5
    files = sorted(out.glob("taxi_type=green/year=*/month=*/*.parquet"))  # the current sets
    assert [f.name for f in files] == ["predictions.parquet"] * 5
    assert len(sorted(out.glob("_versions/taxi_type=green/year=*/month=*/*.parquet"))) == 5
    assert run() == ["done"] * 5
    files[2].unlink()
    assert run() == ["done", "done", "completed", "done", "done"]
