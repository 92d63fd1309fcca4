"""Compiling a model's forest (`model.compiling`): verified bit for bit, logged beside the model."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import ExtraTreesRegressor, RandomForestRegressor
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.pipeline import make_pipeline

from ride_duration.model import compiling

ROWS = [{"PU_DO": f"{i % 9}_{i % 4}", "trip_distance": (i % 13) / 3} for i in range(400)]
TARGET = np.array([row["trip_distance"] * 3 + (i % 9) for i, row in enumerate(ROWS)])


@pytest.fixture(scope="module")
def forest():
    regressor = RandomForestRegressor(n_estimators=4, max_depth=6, random_state=0)
    return make_pipeline(DictVectorizer(), regressor).fit(ROWS, TARGET)


def test_a_forest_is_compiled_and_verified_on_its_training_rows(forest):
    compiled = compiling.compile_checked(forest, ROWS)
    assert compiled.verification.given_rows == len(ROWS)
    assert compiled.describe().startswith("bit for bit equal to scikit-learn (n_jobs=1) on 400 ")
    pairs = compiled.model.vocabulary.encode(np.array([1]), np.array([1]))
    expected = forest.predict([{"PU_DO": "1_1", "trip_distance": 2.0}])
    assert compiled.model.predict(pairs, np.array([2.0])).tobytes() == expected.tobytes()


@pytest.fixture(scope="module")
def linear():
    return make_pipeline(DictVectorizer(), LinearRegression()).fit(ROWS, TARGET)


def test_a_linear_model_is_compiled_and_verified_on_its_training_rows(linear):
    compiled = compiling.compile_checked(linear, ROWS)
    assert compiled.kind.file_name == "linear.npz"
    assert compiled.verification.given_rows == len(ROWS)
    assert compiled.describe().startswith("bit for bit equal to scikit-learn on 400 training rows")
    pairs = compiled.model.vocabulary.encode(np.array([1]), np.array([1]))
    expected = linear.predict([{"PU_DO": "1_1", "trip_distance": 2.0}])
    assert compiled.model.predict(pairs, np.array([2.0])).tobytes() == expected.tobytes()


DISTANCES = [[row["trip_distance"]] for row in ROWS]


@pytest.mark.parametrize(
    ("factory", "rows"),
    [
        (lambda: make_pipeline(DictVectorizer(), Ridge()), ROWS),
        (lambda: make_pipeline(DictVectorizer(sparse=False), LinearRegression()), ROWS),
        (lambda: make_pipeline(DictVectorizer(), ExtraTreesRegressor(n_estimators=2)), ROWS),
        (LinearRegression, DISTANCES),
    ],
    ids=["ridge", "dense-linear", "extra-trees", "no-pipeline"],
)
def test_what_no_compiled_kind_repeats_exactly_is_not_compiled(factory, rows):
    assert compiling.compile_checked(factory().fit(rows, TARGET), ROWS) is None


@pytest.mark.parametrize(
    ("fixture", "same"),
    [
        (
            "forest",
            lambda loaded, compiled: (
                loaded is not None
                and np.array_equal(loaded.vocabulary.pair_keys, compiled.vocabulary.pair_keys)
            ),
        ),
        (
            "linear",
            lambda loaded, compiled: (
                type(loaded) is type(compiled) and loaded.coef.tobytes() == compiled.coef.tobytes()
            ),
        ),
    ],
)
def test_the_compiled_form_is_logged_beside_the_models_pickle_and_loads(
    fixture, same, request, tmp_path, monkeypatch
):
    import mlflow
    import mlflow.sklearn

    from ride_duration.model.loading import load_compiled

    pipeline = request.getfixturevalue(fixture)
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(pipeline, name="model", serialization_format="cloudpickle")
    compiled = compiling.compile_checked(pipeline, ROWS)
    compiling.log_to_model(info.model_id, compiled)
    location = mlflow.MlflowClient().get_logged_model(info.model_id).artifact_location
    loaded = load_compiled(f"models:/{info.model_id}", location)
    assert same(loaded, compiled.model)
