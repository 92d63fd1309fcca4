"""The serving core shared by batch, the web service and the stream (`model.service`)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sklearn.ensemble import RandomForestRegressor
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline

from ride_duration.data import features as f
from ride_duration.model.distinct import PredictionCache
from ride_duration.model.predictors import make_predictor
from ride_duration.model.resolve import ModelRef
from ride_duration.model.service import ServingModel
from tests.support.rides import as_rides, prepared

MODEL = ModelRef(uri="models:/m@a", resolved_uri="models:/m/3", name="m", version="3")
RIDE = {"PULocationID": 130, "DOLocationID": 205, "trip_distance": 3.66}


@pytest.fixture(scope="module")
def forest() -> ServingModel:
    trips = prepared(2021, 2, 3_000)
    regressor = RandomForestRegressor(n_estimators=10, max_depth=10, random_state=0)
    pipeline = make_pipeline(DictVectorizer(), regressor)
    pipeline.fit(f.feature_records(trips), trips[f.ACTUAL_DURATION].to_numpy())
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


def test_a_model_that_is_not_a_dict_vectorizer_pipeline_serves_through_the_generic_path():
    trips = prepared(2021, 2, 500)
    scaled = make_pipeline(DictVectorizer(sparse=False), LinearRegression())
    scaled.fit(f.feature_records(trips), trips[f.ACTUAL_DURATION].to_numpy())
    model = ServingModel(MODEL, make_predictor(scaled))
    expected = scaled.predict([{"PU_DO": "130_205", "trip_distance": 3.66}])
    np.testing.assert_allclose(model.predict_rides([RIDE]), expected, rtol=0, atol=1e-9)
