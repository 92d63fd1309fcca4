"""Training (`model.training`): fit on a month, validate on the next, log and register."""

from __future__ import annotations

import pytest
from sklearn.ensemble import RandomForestRegressor
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LinearRegression

from ride_duration.core.months import Month
from ride_duration.model import training
from tests.support.tlc_fake import file_name, make_trips, write_trips


@pytest.mark.parametrize(
    ("estimator", "regressor"),
    [("random-forest", RandomForestRegressor), ("linear", LinearRegression)],
)
def test_the_pipeline_is_a_dict_vectorizer_and_the_chosen_regressor(estimator, regressor):
    pipeline = training.make_pipeline(estimator)
    first, last = (step for _, step in pipeline.steps)
    assert type(first) is DictVectorizer
    assert type(last) is regressor
    if estimator == "random-forest":
        assert last.get_params() | training.RANDOM_FOREST_PARAMS == last.get_params()


def test_a_trained_model_is_logged_registered_and_aliased(tmp_path, monkeypatch):
    import mlflow

    for month in (1, 2):
        write_trips(
            tmp_path / file_name("green", 2021, month), make_trips("green", 2021, month, 3_000)
        )
    monkeypatch.chdir(tmp_path)  # the store keeps its artifacts in ./mlruns
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    trained = training.train(
        taxi_type="green",
        month=Month(2021, 1),
        estimator="linear",
        input_uri_template=str(tmp_path / "{taxi_type}_tripdata_{year:04d}-{month:02d}.parquet"),
        experiment_name="test",
        model_name="ride",
        alias="production",
        batch_size=1_000,
    )
    assert (trained.model_name, trained.model_version, trained.alias) == ("ride", "1", "production")
    # The linear model is compiled too, and its compiled form logged beside its pickle.
    assert trained.compiled.startswith(
        "compiled linear model: bit for bit equal to scikit-learn on "
    )
    assert trained.rmse > 0
    client = mlflow.MlflowClient()
    assert client.get_model_version_by_alias("ride", "production").run_id == trained.run_id
    params = client.get_run(trained.run_id).data.params
    assert (params["train_month"], params["valid_month"]) == ("2021-01", "2021-02")
    source = client.get_model_version("ride", "1").source
    files = {a.path for a in client.list_logged_model_artifacts(source.removeprefix("models:/"))}
    assert "linear.npz" in files


@pytest.mark.parametrize(
    ("present", "says"),
    [
        ([2], "training month green 2021-01: no trip file at "),
        (
            [1],
            "validation month green 2021-02 (training validates on the month after the one it "
            "trains on): no trip file at ",
        ),
    ],
)
def test_a_missing_month_says_whether_it_is_the_training_or_the_validation_month(
    tmp_path, present, says
):
    from ride_duration.core.errors import InputNotFoundError

    for month in present:
        write_trips(tmp_path / file_name("green", 2021, month), make_trips("green", 2021, month))
    with pytest.raises(InputNotFoundError) as missing:
        training.train(
            taxi_type="green",
            month=Month(2021, 1),
            estimator="linear",
            input_uri_template=str(
                tmp_path / "{taxi_type}_tripdata_{year:04d}-{month:02d}.parquet"
            ),
            experiment_name="test",
            model_name="ride",
            alias="production",
            batch_size=1_000,
        )
    assert str(missing.value).startswith(says)
    assert "\n" not in str(missing.value)
