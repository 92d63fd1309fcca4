"""A month's drift from its model's reference profile, while it is scored: figures, limits,
the manifest's section and the monitoring table's row."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from sklearn.ensemble import RandomForestRegressor
from sklearn.feature_extraction import DictVectorizer
from sklearn.pipeline import make_pipeline

from ride_duration.batch import history
from ride_duration.batch.month import score_month
from ride_duration.batch.paths import MonthOutput
from ride_duration.batch.sink import ParquetFolder
from ride_duration.core.errors import QualityError
from ride_duration.core.limits import Limits
from ride_duration.core.months import Month
from ride_duration.core.settings import Settings
from ride_duration.data import features
from ride_duration.data.sources import read_trips
from ride_duration.model.predictors import make_predictor
from ride_duration.model.profiling import reference_profile
from ride_duration.monitoring import drift
from ride_duration.monitoring.profile import COLUMNS, Profile
from tests.support.rides import MODEL, prepared
from tests.support.tlc_fake import file_name, make_trips, write_trips

MARCH = Month(2021, 3)
ROW_FILE = "_monitoring/green-2021-03.parquet"


@pytest.fixture(scope="module")
def predictor():
    trips = prepared(2021, 2, 1_500)
    pipeline = make_pipeline(
        DictVectorizer(), RandomForestRegressor(n_estimators=5, max_depth=8, random_state=0)
    ).fit(
        features.feature_records(trips, features.ALL_FEATURES),
        trips[features.ACTUAL_DURATION].to_numpy(),
    )
    return make_predictor(pipeline)


@pytest.fixture(scope="module")
def march(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("trips")
    return write_trips(folder / file_name("green", 2021, 3), make_trips("green", 2021, 3, 3_000))


@pytest.fixture(scope="module")
def shifted(march) -> Path:
    """March with every distance times 1.5."""
    table = pq.read_table(march)
    index = table.schema.get_field_index("trip_distance")
    table = table.set_column(
        index, "trip_distance", pc.multiply(table["trip_distance"], pa.scalar(1.5))
    )
    path = march.parent / "shifted" / march.name
    path.parent.mkdir(exist_ok=True)
    pq.write_table(table, path)
    return path


@pytest.fixture(scope="module")
def reference(predictor, march) -> Profile:
    """The profile a model trained on March would have: its trips, its predictions."""
    return reference_profile(predictor, read_trips(str(march), "green", MARCH, 10_000))


def score(source: Path, root: Path, predictor, reference, limits=Limits(), batch_size=500):  # noqa: B008
    return score_month(
        taxi_type="green",
        month=MARCH,
        input_uri=str(source),
        sink=ParquetFolder(MonthOutput(str(root), "green", MARCH), stale_after_seconds=60),
        model=MODEL,
        predictor=predictor,
        settings=Settings(batch_size=batch_size, limits=limits),
        reference=reference,
    )


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def row(root: Path) -> dict:
    return pq.read_table(root / ROW_FILE).to_pylist()[0]


@pytest.mark.parametrize("batch_size", [1_000_000, 500, 37])
def test_scoring_the_reference_month_again_measures_no_drift(
    tmp_path, predictor, march, reference, batch_size
):
    result = score(march, tmp_path, predictor, reference, batch_size=batch_size)
    assert [column.column for column in result.drift] == list(COLUMNS)
    assert all(c.psi == 0 and c.js_distance == 0 for c in result.drift)
    for column in COLUMNS:  # the very same counts, whatever the batches
        assert result.profile.histograms[column].counts.tolist() == (
            reference.histograms[column].counts.tolist()
        )


@pytest.mark.parametrize(
    ("limits", "fragment"),
    [
        (Limits(max_psi=0.2), "trip_distance psi "),
        (Limits(max_js_distance=0.1), "trip_distance js_distance "),
    ],
)
def test_a_month_whose_distances_grew_by_half_is_refused_and_says_why(
    tmp_path, predictor, shifted, march, reference, limits, fragment
):
    with pytest.raises(QualityError) as caught:
        score(shifted, tmp_path / "shifted", predictor, reference, limits)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"green 2021-03 failed its checks: {fragment}")
    assert message.endswith("; nothing was published")
    # Nothing published, staged or locked: the month's row says it was refused, and why.
    assert files(tmp_path / "shifted") == [ROW_FILE]
    refused = row(tmp_path / "shifted")
    assert (refused["state"], refused["reason"]) == ("refused", message)
    assert refused["trip_distance_psi"] > 0.2
    # The same limits pass the month as it was.
    result = score(march, tmp_path / "unshifted", predictor, reference, limits)
    assert result.rows_scored > 0
    assert row(tmp_path / "unshifted")["state"] == "published"


def test_by_default_a_drifted_month_is_published_with_a_warning(
    tmp_path, predictor, shifted, reference, caplog
):
    with caplog.at_level(logging.WARNING, logger="ride_duration"):
        result = score(shifted, tmp_path, predictor, reference)
    distance = next(c for c in result.drift if c.column == "trip_distance")
    assert distance.psi > Limits().warn_psi
    warned = [r.getMessage() for r in caplog.records if "drifted" in r.getMessage()]
    assert len(warned) == 1
    assert warned[0].startswith("green 2021-03 drifted: trip_distance psi ")
    assert "> WARN_PSI 0.25" in warned[0]
    assert row(tmp_path)["state"] == "published"


def test_the_manifest_and_the_row_hold_the_figures_and_the_histograms_behind_them(
    tmp_path, predictor, shifted, reference
):
    result = score(shifted, tmp_path, predictor, reference)
    content = json.loads(
        (
            tmp_path / MonthOutput(str(tmp_path), "green", MARCH).partition / "_manifest.json"
        ).read_text()
    )
    section = content["drift"]
    assert section["reference"] == "profile.npz"
    assert set(section["columns"]) == set(COLUMNS)
    published = row(tmp_path)
    assert published["has_reference"] is True
    for column in result.drift:
        assert section["columns"][column.column]["psi"] == column.psi
        assert published[f"{column.column}_psi"] == column.psi
        # A reader can recompute every figure from the row alone.
        counts = np.array(published[f"{column.column}_counts"])
        before = np.array(published[f"{column.column}_reference_counts"])
        assert drift.psi(before, counts) == column.psi
        assert drift.js_distance(before, counts) == column.js_distance
    for zone in ("PULocationID", "DOLocationID"):
        shares = section["columns"][zone]
        assert 0 <= shares["unknown_share"] <= 1
        assert published[f"{zone}_unknown_share"] == shares["unknown_share"]
    assert published["rows_scored"] == result.rows_scored
    assert published["rmse"] == result.metrics["rmse"]


def test_a_model_without_a_profile_scores_and_measures_no_drift(tmp_path, predictor, march):
    result = score(march, tmp_path, predictor, None)
    assert (result.drift, result.profile) == ([], None)
    content = json.loads(
        (
            tmp_path / MonthOutput(str(tmp_path), "green", MARCH).partition / "_manifest.json"
        ).read_text()
    )
    assert content["drift"] == {"reference": None, "columns": {}}
    published = row(tmp_path)
    assert published["has_reference"] is False
    assert published["trip_distance_psi"] is None
    assert published["rmse"] == result.metrics["rmse"]
    assert history.read(str(tmp_path)).num_rows == 1
