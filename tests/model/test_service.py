"""The serving core shared by batch, the web service and the stream (`model.service`)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sklearn.ensemble import RandomForestRegressor
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline

from ride_duration.core.errors import ConfigurationError, RideError
from ride_duration.data import features, rules
from ride_duration.data.rides import checked_table
from ride_duration.model.compiling import compile_checked
from ride_duration.model.distinct import PredictionCache
from ride_duration.model.predictors import make_predictor
from ride_duration.model.resolve import ModelRef
from ride_duration.model.service import ServingModel, predictor_for
from tests.support.rides import as_rides, prepared

MODEL = ModelRef(uri="models:/m@a", resolved_uri="models:/m/3", name="m", version="3")
RIDE = {"PULocationID": 130, "DOLocationID": 205, "trip_distance": 3.66}


@pytest.fixture(scope="module")
def forest() -> ServingModel:
    trips = prepared(2021, 2, 3_000)
    regressor = RandomForestRegressor(n_estimators=10, max_depth=10, random_state=0)
    pipeline = make_pipeline(DictVectorizer(), regressor)
    pipeline.fit(features.feature_records(trips), trips[features.ACTUAL_DURATION].to_numpy())
    return ServingModel(MODEL, make_predictor(pipeline))


def test_single_rides_from_eight_threads_equal_the_batch_path(forest: ServingModel):
    trips = prepared(2021, 3, 1_200).slice(0, 1_000)
    rides = as_rides(trips)
    # The batch path: the month's batch through the predictor with the month's cache.
    expected = forest.predictor.predict_batch(trips, PredictionCache()).values
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda ride: forest.predict_rides([ride])[0], rides))
    np.testing.assert_allclose(answers, expected, rtol=0, atol=1e-9)
    # ... and many rides in one call give the same answers.
    np.testing.assert_allclose(forest.predict_rides(rides), expected, rtol=0, atol=1e-9)


def test_a_serving_model_says_its_version(forest: ServingModel):
    assert forest.version == "m/3"
    assert forest.predict_rides([RIDE]).shape == (1,)
    assert forest.predict_rides([]).shape == (0,)


BAD_DISTANCE = {**RIDE, "trip_distance": -1}
NOT_A_RIDE = "not a ride"


@pytest.mark.parametrize(
    ("rides", "kept", "refused"),
    [
        ([RIDE, RIDE], [0, 1], []),
        ([RIDE, BAD_DISTANCE, RIDE], [0, 2], [(1, "trip_distance")]),
        ([NOT_A_RIDE, RIDE, BAD_DISTANCE], [1], [(0, None), (2, "trip_distance")]),
        ([BAD_DISTANCE], [], [(0, "trip_distance")]),
        ([], [], []),
    ],
    ids=["all kept", "one bad value", "malformed and bad", "none kept", "none"],
)
def test_one_scoring_call_predicts_the_kept_rides_and_names_the_others(
    forest: ServingModel, rides, kept, refused
):
    scored = forest.score(rides)
    assert scored.kept == kept
    assert [(error.index, error.field) for error in scored.errors] == refused
    alone = forest.predict_rides([rides[i] for i in kept])
    assert scored.predictions.tobytes() == alone.tobytes()  # the kept rides' answers, as alone
    if refused:
        with pytest.raises(RideError) as raised:
            forest.predict_rides(rides)  # answered whole or refused: the first broken rule
        assert (raised.value.index, raised.value.field) == refused[0]


def test_a_model_that_is_not_a_dict_vectorizer_pipeline_serves_through_the_generic_path():
    trips = prepared(2021, 2, 500)
    scaled = make_pipeline(DictVectorizer(sparse=False), LinearRegression())
    scaled.fit(features.feature_records(trips), trips[features.ACTUAL_DURATION].to_numpy())
    model = ServingModel(MODEL, make_predictor(scaled))
    expected = scaled.predict([{"PU_DO": "130_205", "trip_distance": 3.66}])
    np.testing.assert_allclose(model.predict_rides([RIDE]), expected, rtol=0, atol=1e-9)


@pytest.fixture(scope="module")
def predictors() -> dict:
    """The three paths for one fitted forest: compiled, scikit-learn's fast path, generic."""
    from ride_duration.model.runtimes.records import RecordsPredictor

    trips = prepared(2021, 2, 3_000)
    fitted = make_pipeline(
        DictVectorizer(), RandomForestRegressor(n_estimators=10, max_depth=10, random_state=0)
    ).fit(features.feature_records(trips), trips[features.ACTUAL_DURATION].to_numpy())
    return {
        "compiled": make_predictor(compile_checked(fitted, features.feature_records(trips)).model),
        "scikit-learn fast path": make_predictor(fitted),
        "generic": RecordsPredictor(fitted),
    }


@pytest.mark.parametrize("path", ["compiled", "scikit-learn fast path", "generic"])
def test_checked_rides_are_predicted_as_their_table_is_bit_for_bit(predictors, path):
    rides = [*as_rides(prepared(2021, 3, 800)), {**RIDE, "PULocationID": None}, RIDE]
    rides.append({**RIDE, "DOLocationID": "205", "trip_distance": "0"})
    checked = rules.check_rides(rides)
    assert not checked.errors
    predictor = predictors[path]
    got = predictor.predict_checked(checked)
    assert got.tobytes() == predictor.predict(checked_table(checked)).tobytes()
    assert got.tobytes() == predictors["scikit-learn fast path"].predict_checked(checked).tobytes()


@pytest.mark.parametrize(
    ("name", "version", "compile_uri", "which"),
    [
        ("ride-duration", "3", "models:/ride-duration/3", ""),
        (None, None, "models:/NAME/VERSION", " registered in MLflow"),  # a folder: register it
    ],
)
def test_without_scikit_learn_a_model_with_no_compiled_forest_is_refused_in_one_line(
    not_installed, tmp_path, name, version, compile_uri, which
):
    """The hint names the compile command as it works: on a registered version."""
    (tmp_path / "MLmodel").write_text("flavors:\n  sklearn: {pickled_model: model.pkl}\n")
    not_installed("sklearn")
    model = ModelRef(uri=str(tmp_path), resolved_uri=str(tmp_path), name=name, version=version)
    with pytest.raises(ConfigurationError) as error:
        predictor_for(model)
    assert str(error.value) == (
        f"model {tmp_path} has no compiled form, and this install has no scikit-learn: a "
        f"random forest or a linear regression{which} is compiled, in the full install, with "
        f"`python -m ride_duration.compile {compile_uri}`; any other model is served by the "
        "full install or image"
    )


@pytest.fixture(scope="module")
def linear_folder(tmp_path_factory):
    """A linear model's folder with only its MLmodel and its compiled form: no pickle at all."""
    from ride_duration.forest import npz

    trips = prepared(2021, 2, 3_000)
    fitted = make_pipeline(DictVectorizer(), LinearRegression())
    fitted.fit(features.feature_records(trips), trips[features.ACTUAL_DURATION].to_numpy())
    folder = tmp_path_factory.mktemp("linear")
    (folder / "MLmodel").write_text("flavors:\n  sklearn: {pickled_model: model.pkl}\n")
    npz.save(compile_checked(fitted, features.feature_records(trips)).model, folder)
    return folder, fitted


def test_without_scikit_learn_a_compiled_linear_model_is_served_bit_for_bit(
    not_installed, linear_folder
):
    folder, fitted = linear_folder
    not_installed("sklearn")
    model = ModelRef(uri=str(folder), resolved_uri=str(folder), name=None, version=None)
    serving = ServingModel(model, predictor_for(model))
    assert serving.predictor.path == "compiled linear model"
    rides = [*as_rides(prepared(2021, 3, 800)), {**RIDE, "PULocationID": None}, RIDE]
    rides.append({**RIDE, "DOLocationID": "205", "trip_distance": "0"})
    checked = rules.check_rides(rides)
    expected = make_predictor(fitted).predict_checked(checked)
    assert serving.predict_rides(rides).tobytes() == expected.tobytes()
    assert serving.predictor.predict_checked(checked).tobytes() == expected.tobytes()
