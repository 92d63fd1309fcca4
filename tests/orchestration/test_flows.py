"""The two flows run in this process, against Prefect's test harness (a temporary API of its
own): the score flow as Prefect runs it and its body alone (`.fn`), and the backfill flow with
its months as subflows, one of them failing. The same flows as commands, deployments and workers
are tested against real servers in tests/integration/."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from prefect.client.orchestration import get_client
from prefect.logging import disable_run_logger
from sklearn.ensemble import RandomForestRegressor
from sklearn.feature_extraction import DictVectorizer
from sklearn.pipeline import make_pipeline

from ride_duration.batch.paths import MonthOutput
from ride_duration.core.months import Month
from ride_duration.orchestration import flows
from tests.support.tlc_fake import file_name, make_trips, write_trips

TEMPLATE = "{taxi_type}_tripdata_{year:04d}-{month:02d}.parquet"
ROWS = 500


@pytest.fixture(scope="module")
def api():
    """Prefect's test harness: a temporary API and database for this module's flow runs."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    """A model folder as MLflow saves a DictVectorizer + RandomForestRegressor pipeline."""
    import mlflow.sklearn

    rows = [{"PU_DO": f"{i % 7}_{i % 5}", "trip_distance": float(i % 11)} for i in range(300)]
    target = np.array([row["trip_distance"] * 2.0 + 3.0 for row in rows])
    pipeline = make_pipeline(
        DictVectorizer(), RandomForestRegressor(n_estimators=3, random_state=0)
    )
    pipeline.fit(rows, target)
    folder = tmp_path_factory.mktemp("model") / "model"
    mlflow.sklearn.save_model(pipeline, str(folder), serialization_format="cloudpickle")
    return folder


@pytest.fixture
def months(api, model_folder, tmp_path, monkeypatch) -> Path:
    """Green 2021-02 and 2021-03 as trip files, the settings pointing at them and the model;
    the output root it returns is empty."""
    trips = tmp_path / "trips"
    for month in (2, 3):
        write_trips(trips / file_name("green", 2021, month), make_trips("green", 2021, month, ROWS))
    output = tmp_path / "output"
    monkeypatch.setenv("MODEL_URI", str(model_folder))
    monkeypatch.setenv("TRUSTED_MODEL_PREFIXES", str(model_folder))
    monkeypatch.setenv("INPUT_URI_TEMPLATE", str(trips / TEMPLATE))
    monkeypatch.setenv("OUTPUT_ROOT", str(output))
    return output


def _published_rows(output: Path, month: int) -> int:
    current = Path(MonthOutput(str(output), "green", Month(2021, month)).current)
    return pq.read_metadata(current).num_rows


def _flow_run_name(state) -> str:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(state.state_details.flow_run_id).name


def test_the_score_flow_publishes_its_month_and_names_its_run(months):
    state = flows.score(taxi_type="green", year=2021, month=3, return_state=True)

    assert state.is_completed(), state
    summary = state.result()
    assert summary["month"] == "2021-03"
    assert summary["rows_scored"] == _published_rows(months, 3) > 0
    assert summary["rows_read"] == ROWS
    assert _flow_run_name(state) == "score-green-2021-03"


def test_the_score_flows_body_runs_alone_through_fn(months):
    # Outside a flow run, Prefect still records the report (and says that it will stop).
    with disable_run_logger(), pytest.warns(FutureWarning, match="outside of a flow"):
        summary = flows.score.fn(taxi_type="green", year=2021, month=2)

    assert summary["month"] == "2021-02"
    assert summary["rows_scored"] == _published_rows(months, 2) > 0


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"model_uri": "/nowhere/model"}, "/nowhere/model"),
        ({"input_uri_template": "/nowhere/{taxi_type}-{year}-{month}.parquet"}, "/nowhere/"),
    ],
)
def test_a_score_run_that_cannot_start_fails_saying_why(months, parameters, message):
    state = flows.score(taxi_type="green", year=2021, month=3, return_state=True, **parameters)

    assert state.is_failed(), state
    assert message in str(state.result(raise_on_failure=False))
    assert not (months / "taxi_type=green").exists()


def test_the_backfill_scores_each_month_as_a_subflow_and_a_failure_stops_none(months, tmp_path):
    # January has no trip file (left alone: not published); February's is no parquet file.
    (tmp_path / "trips" / file_name("green", 2021, 2)).write_bytes(b"not a parquet file")

    state = flows.backfill(taxi_types=["green"], start="2021-01", end="2021-03", return_state=True)

    assert state.is_failed(), state
    error = state.result(raise_on_failure=False)
    assert "2021-02" in str(error)
    assert "2021-01" not in str(error)
    assert not (months / "taxi_type=green" / "year=2021" / "month=02").exists()
    assert _published_rows(months, 3) > 0
