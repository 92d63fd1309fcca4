"""Scoring one month end to end on local files: `ride_duration.batch.month`."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.ensemble import RandomForestRegressor
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline, make_pipeline

from ride_duration.batch import manifest, result
from ride_duration.batch.month import score_month
from ride_duration.batch.output import OUTPUT_SCHEMA
from ride_duration.batch.paths import MonthOutput
from ride_duration.batch.sink import ParquetFolder
from ride_duration.core.errors import ConfigurationError, QualityError, SchemaError
from ride_duration.core.limits import Limits
from ride_duration.core.months import Month
from ride_duration.core.settings import Settings
from ride_duration.data import features, layouts
from ride_duration.data.ride_ids import deterministic_ride_ids
from ride_duration.data.taxi_types import TAXI_TYPES
from ride_duration.model.predictors import make_predictor
from ride_duration.model.resolve import ModelRef
from tests.support.rides import prepare
from tests.support.tlc_fake import file_name, make_trips, write_trips

MODEL = ModelRef(uri="x", resolved_uri="x", name="m", version="1", run_id="abc")
ROWS = 2_000
REASONS = [reason.value for reason in features.DropReason]


def prepared(raw: pa.Table, taxi_type: str, year: int, month: int, names) -> pa.Table:
    return prepare(raw, taxi_type, year, month, names)


def fitted(pipeline: Pipeline, taxi_type: str, names: tuple[str, ...]) -> Pipeline:
    trips = prepared(make_trips(taxi_type, 2021, 2, rows=1_500), taxi_type, 2021, 2, names)
    return pipeline.fit(
        features.feature_records(trips, names), trips[features.ACTUAL_DURATION].to_numpy()
    )


@pytest.fixture(scope="module")
def forest() -> Pipeline:
    regressor = RandomForestRegressor(n_estimators=5, max_depth=8, random_state=0)
    return fitted(make_pipeline(DictVectorizer(), regressor), "green", features.ALL_FEATURES)


@pytest.fixture(scope="module")
def linear() -> Pipeline:
    return fitted(
        make_pipeline(DictVectorizer(), LinearRegression()), "green", features.ALL_FEATURES
    )


@pytest.fixture(scope="module")
def fhv_linear() -> Pipeline:
    return fitted(make_pipeline(DictVectorizer(), LinearRegression()), "fhv", (features.PU_DO,))


@pytest.fixture(scope="module")
def trip_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("trips")
    return {
        taxi_type: write_trips(
            folder / file_name(taxi_type, 2021, 3), make_trips(taxi_type, 2021, 3, rows=ROWS)
        )
        for taxi_type in TAXI_TYPES
    }


def month_output(root: Path, taxi_type: str = "green", month: int = 3) -> MonthOutput:
    return MonthOutput(str(root), taxi_type, Month(2021, month))


def current(root: Path, taxi_type: str = "green", month: int = 3) -> Path:
    """The month's current set: the file every reader of `root` reads."""
    return Path(month_output(root, taxi_type, month).current)


def files(folder: Path) -> list[str]:
    """Every file below `folder`, hidden ones included."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir())


def score(
    input_path: Path,
    root: Path,
    predictor,
    *,
    taxi_type: str = "green",
    month: int = 3,
    batch_size: int = 500,
    ride_id_mode: str = "deterministic",
    limits: Limits = Limits(),  # noqa: B008 - frozen
) -> result.MonthResult:
    return score_month(
        taxi_type=taxi_type,
        month=Month(2021, month),
        input_uri=str(input_path),
        sink=ParquetFolder(month_output(root, taxi_type, month), stale_after_seconds=60),
        model=MODEL,
        predictor=predictor,
        settings=Settings(batch_size=batch_size, limits=limits, ride_id_mode=ride_id_mode),
    )


def test_counts_add_up(tmp_path, trip_files, forest):
    root = tmp_path / "out"
    result = score(trip_files["green"], root, make_predictor(forest))
    assert result.rows_read == pq.read_metadata(trip_files["green"]).num_rows == ROWS
    assert list(result.rows_dropped) == REASONS
    assert result.rows_read == result.rows_scored + sum(result.rows_dropped.values())
    assert result.rows_dropped["pickup_outside_month"] > 0
    assert result.rows_dropped["duration_out_of_range"] > 0
    written = pq.read_table(current(root))
    assert written.num_rows == result.rows_scored
    assert written.schema.equals(OUTPUT_SCHEMA)
    assert result.output_uri == str(current(root))
    assert result.manifest_uri == month_output(root).manifest
    assert result.label == "green 2021-03"
    assert set(result.seconds) >= {
        "read",
        "prepare",
        "ride_ids",
        "predict",
        "write",
        "publish",
        "total",
    }
    assert files(root) == [
        "_monitoring/green-2021-03.parquet",
        "_versions/taxi_type=green/year=2021/month=03/abc.parquet",
        "taxi_type=green/year=2021/month=03/_manifest.json",
        "taxi_type=green/year=2021/month=03/predictions.parquet",
    ]


def test_the_output_holds_the_expected_rows(tmp_path, trip_files, forest):
    root = tmp_path / "out"
    score(trip_files["green"], root, make_predictor(forest), batch_size=333)
    written = pq.read_table(current(root))
    # the month prepared in one piece, independently of the batches
    trips = prepared(pq.read_table(trip_files["green"]), "green", 2021, 3, features.ALL_FEATURES)
    expected_ids = deterministic_ride_ids(
        "green", Month(2021, 3), trips[features.ROW_NUMBER].to_numpy()
    )
    assert written["ride_id"].to_pylist() == expected_ids.to_pylist()
    assert written["pickup_datetime"].to_pylist() == trips[layouts.PICKUP].to_pylist()
    assert written["PULocationID"].to_pylist() == trips[layouts.PICKUP_LOCATION].to_pylist()
    assert written["DOLocationID"].to_pylist() == trips[layouts.DROPOFF_LOCATION].to_pylist()
    actual = trips[features.ACTUAL_DURATION].to_numpy()
    predicted = forest.predict(features.feature_records(trips))
    np.testing.assert_array_equal(written["actual_duration"].to_numpy(), actual)
    np.testing.assert_allclose(written["predicted_duration"].to_numpy(), predicted, atol=1e-9)
    np.testing.assert_allclose(written["diff"].to_numpy(), actual - predicted, atol=1e-9)
    assert set(written["model_version"].to_pylist()) == {"m/1"}


def test_ride_ids_are_the_same_when_scored_twice(tmp_path, trip_files, forest):
    first, second = tmp_path / "1", tmp_path / "2"
    score(trip_files["green"], first, make_predictor(forest))
    score(trip_files["green"], second, make_predictor(forest))
    ids = pq.read_table(current(first))["ride_id"].to_pylist()
    assert ids == pq.read_table(current(second))["ride_id"].to_pylist()
    assert len(set(ids)) == len(ids)
    assert {uuid.UUID(value).version for value in ids} == {8}


def test_random_ride_ids_differ_between_runs(tmp_path, trip_files, forest):
    first, second = tmp_path / "1", tmp_path / "2"
    score(trip_files["green"], first, make_predictor(forest), ride_id_mode="random")
    score(trip_files["green"], second, make_predictor(forest), ride_id_mode="random")
    a, b = pq.read_table(current(first)), pq.read_table(current(second))
    assert not set(a["ride_id"].to_pylist()) & set(b["ride_id"].to_pylist())
    assert {uuid.UUID(value).version for value in a["ride_id"].to_pylist()} == {4}
    assert a.drop_columns(["ride_id"]).equals(b.drop_columns(["ride_id"]))


@pytest.mark.parametrize("batch_sizes", [(7, 100_000), (100_000, 13), (999, 1_001)])
def test_the_batch_size_does_not_change_the_output(tmp_path, trip_files, linear, batch_sizes):
    tables, results = [], []
    for batch_size in batch_sizes:
        root = tmp_path / str(batch_size)
        results.append(
            score(trip_files["green"], root, make_predictor(linear), batch_size=batch_size)
        )
        tables.append(pq.read_table(current(root)).combine_chunks())
    assert tables[0].equals(tables[1])
    assert results[0].rows_dropped == results[1].rows_dropped
    assert results[0].rows_scored == results[1].rows_scored


def test_row_groups_smaller_than_a_batch(tmp_path, trip_files, forest):
    grouped = tmp_path / "grouped.parquet"
    pq.write_table(pq.read_table(trip_files["green"]), grouped, row_group_size=150)
    assert pq.ParquetFile(grouped).num_row_groups > 10
    outputs = []
    for name, path in (("grouped", grouped), ("plain", trip_files["green"])):
        root = tmp_path / name
        score(path, root, make_predictor(forest), batch_size=400)
        outputs.append(pq.read_table(current(root)).combine_chunks())
    assert outputs[0].equals(outputs[1])


@pytest.mark.parametrize("taxi_type", ["green", "yellow", "fhvhv"])
def test_every_taxi_type_with_distance_scores(tmp_path, trip_files, forest, taxi_type):
    root = tmp_path / "out"
    result = score(trip_files[taxi_type], root, make_predictor(forest), taxi_type=taxi_type)
    assert result.rows_read == ROWS
    assert 0 < result.rows_scored == pq.read_table(current(root, taxi_type)).num_rows


def test_fhv_scores_with_a_model_without_distance(tmp_path, trip_files, fhv_linear):
    root = tmp_path / "out"
    result = score(trip_files["fhv"], root, make_predictor(fhv_linear), taxi_type="fhv")
    written = pq.read_table(current(root, "fhv"))
    assert result.rows_read == result.rows_scored + sum(result.rows_dropped.values())
    assert written.num_rows == result.rows_scored > 0
    assert written["PULocationID"].null_count > 0  # unknown locations are scored, not dropped
    assert result.rows_dropped["invalid_location"] == 0


def test_fhv_with_a_model_needing_distance_is_a_schema_error(tmp_path, trip_files, forest):
    root = tmp_path / "out"
    with pytest.raises(SchemaError, match="trip_distance"):
        score(trip_files["fhv"], root, make_predictor(forest), taxi_type="fhv")
    assert not root.exists()


@pytest.mark.parametrize(("file_type", "scored_as"), [("yellow", "green"), ("green", "yellow")])
def test_a_file_of_another_taxi_type_is_a_schema_error_and_writes_nothing(
    tmp_path, trip_files, forest, file_type, scored_as
):
    root = tmp_path / "out"
    with pytest.raises(SchemaError, match=f"looks like a {file_type} file"):
        score(trip_files[file_type], root, make_predictor(forest), taxi_type=scored_as)
    assert not root.exists()


class FailsOnSecondBatch:
    """A predictor whose second call fails, as a model can on bad data."""

    def __init__(self, predictor) -> None:
        self.predictor = predictor
        self.features = predictor.features
        self.path = predictor.path
        self.calls = 0

    def predict_batch(self, trips: pa.Table, cache=None):
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("model failed")
        return self.predictor.predict_batch(trips, cache)


def test_a_failure_after_some_batches_writes_nothing(tmp_path, trip_files, forest):
    root = tmp_path / "out"
    predictor = FailsOnSecondBatch(make_predictor(forest))
    with pytest.raises(RuntimeError, match="model failed"):
        score(trip_files["green"], root, predictor, batch_size=100)
    assert predictor.calls == 2
    assert files(root) == []  # nothing published, staged or locked


def test_a_month_with_no_scorable_trip_fails_the_default_drop_ratio_and_publishes_nothing(
    tmp_path, trip_files, forest
):
    root = tmp_path / "out"
    with pytest.raises(QualityError, match=r"100\.0% of rows dropped .* > MAX_DROP_RATIO 0\.5"):
        score(trip_files["green"], root, make_predictor(forest), month=7)
    assert files(root) == ["_monitoring/green-2021-07.parquet"]  # why it was refused


def test_without_a_drop_limit_a_month_with_no_scorable_trip_writes_an_empty_file(
    tmp_path, trip_files, forest, caplog
):
    root = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="ride_duration.batch.month"):
        result = score(
            trip_files["green"],
            root,
            make_predictor(forest),
            month=7,
            limits=Limits(max_drop_ratio=None),
        )
    assert result.rows_scored == 0
    assert (
        result.rows_dropped["pickup_outside_month"]
        + result.rows_dropped["missing_datetime"]
        + result.rows_dropped["duration_out_of_range"]
        == ROWS
    )
    written = pq.read_table(current(root, month=7))
    assert written.num_rows == 0
    assert written.schema.equals(OUTPUT_SCHEMA)
    assert manifest.current(month_output(root, month=7))["rows_scored"] == 0
    assert "no trip could be scored" in caplog.text


def test_an_empty_trip_file_writes_an_empty_file(tmp_path, trip_files, forest):
    empty = write_trips(tmp_path / "empty.parquet", pq.read_table(trip_files["green"]).slice(0, 0))
    root = tmp_path / "out"
    result = score(empty, root, make_predictor(forest))
    assert (result.rows_read, result.rows_scored) == (0, 0)
    assert result.rows_dropped == dict.fromkeys(REASONS, 0)
    assert pq.read_table(current(root)).num_rows == 0


def data_pages(path: Path) -> bytes:
    """A parquet file's bytes before its footer (its row groups): the footer carries the
    manifest, with the run's times."""
    data = path.read_bytes()
    footer_length = int.from_bytes(data[-8:-4], "little")
    assert data[-4:] == b"PAR1"
    return data[: len(data) - 8 - footer_length]


RUN_FIELDS = ("started_at", "finished_at", "seconds")  # what differs between two runs


def test_the_same_month_scored_twice_is_the_same_data_byte_for_byte(tmp_path):
    """Exact predictions (blocks on threads, n_jobs=1 each) and no timestamp in the rows."""
    regressor = RandomForestRegressor(n_estimators=8, max_depth=12, random_state=0, n_jobs=-1)
    model = fitted(make_pipeline(DictVectorizer(), regressor), "green", features.ALL_FEATURES)
    source = write_trips(tmp_path / "in.parquet", make_trips("green", 2021, 3, rows=60_000))
    first, second = tmp_path / "a", tmp_path / "b"
    score(source, first, make_predictor(model), batch_size=50_000)
    score(source, second, make_predictor(model), batch_size=50_000)
    assert data_pages(current(first)) == data_pages(current(second))
    manifests = []
    for root in (first, second):
        content = manifest.from_footer(str(current(root)))
        assert content is not None
        for name in RUN_FIELDS:
            del content[name]
        del content["output"]
        manifests.append(content)
    assert manifests[0] == manifests[1]


# --- the layout before the current set --------------------------------------------------------

OLD_PARQUET = pa.table({"ride_id": ["old-1", "old-2"], "model_version": ["m/0", "m/0"]})


@pytest.mark.parametrize(
    ("old_files", "named"),
    [
        (("abc.parquet", "_manifest-abc.json"), "abc.parquet"),
        (("abc.parquet",), "abc.parquet"),
        (("0123abcd.parquet", "_manifest-0123abcd.json", "abc.parquet"), "0123abcd.parquet"),
        (("model-0123456789abcdef.parquet", "_lock-abc.000003.json"), "model-0123456789abcdef"),
        (("predictions.parquet", "abc.parquet", "_manifest.json"), "abc.parquet"),  # half moved
        (("_manifest-abc.json",), None),  # no data file: nothing a reader would count
        ((".abc.parquet.0f0f.inprogress", "_manifest-abc.json"), None),
    ],
)
def test_a_month_in_the_old_layout_is_refused_until_migrated(
    tmp_path, trip_files, linear, old_files: tuple[str, ...], named: str | None
):
    """Files of the layout before (`{run id}.parquet` beside `_manifest-{run id}.json`) would
    be read beside the new set: the month is refused, in one line, and nothing is touched."""
    root = tmp_path / "out"
    folder = Path(month_output(root).folder)
    folder.mkdir(parents=True)
    for name in old_files:
        if name.endswith(".parquet"):
            pq.write_table(OLD_PARQUET, folder / name)
        else:
            (folder / name).write_text(json.dumps({"manifest_version": 1, "name": name}))
    before = {name: (folder / name).read_bytes() for name in old_files}

    if named is None:
        score(trip_files["green"], root, make_predictor(linear))
        assert pq.read_table(current(root))["model_version"].unique().to_pylist() == ["m/1"]
        return
    with pytest.raises(ConfigurationError) as excinfo:
        score(trip_files["green"], root, make_predictor(linear))
    message = str(excinfo.value)
    assert excinfo.type is ConfigurationError
    assert "\n" not in message
    assert f"{folder}/{named}" in message
    assert "is in the output layout of earlier versions" in message
    assert f"run `python -m ride_duration.migrate {root}` once, then score again" in message
    assert files(root) == sorted(f"taxi_type=green/year=2021/month=03/{n}" for n in old_files)
    assert {name: (folder / name).read_bytes() for name in old_files} == before
