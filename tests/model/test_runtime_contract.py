"""The contract every runtime keeps (`model.predictors`), whatever model it runs: the compiled
forest, the compiled linear model, scikit-learn's DictVectorizer fast path (a forest, a linear
model) and the generic path. A month's trips and the same rides sent online get the same
predictions, bit for bit, from each of the three ways in; the model's own predictions where the
runtime promises them; nothing for nothing."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import RandomForestRegressor
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline

from ride_duration.data import features
from ride_duration.data.rules import check_rides
from ride_duration.model.compiling import compile_checked
from ride_duration.model.distinct import PredictionCache
from ride_duration.model.predictors import RUNTIMES, make_predictor
from ride_duration.model.runtimes.compiled import CompiledPredictor
from ride_duration.model.runtimes.pipeline import DictVectorizerPredictor
from ride_duration.model.runtimes.records import RecordsPredictor
from tests.support.rides import as_rides, prepared


def _forest():
    # n_jobs=1: the reference every runtime of a forest is held to, bit for bit
    return make_pipeline(
        DictVectorizer(), RandomForestRegressor(n_estimators=5, max_depth=8, random_state=0)
    )


def _linear():
    return make_pipeline(DictVectorizer(), LinearRegression())


# runtime: (the pipeline it is made from, how it is made, the type it must be)
CASES = {
    "compiled forest": (
        _forest,
        lambda p: make_predictor(compile_checked(p, []).model),
        CompiledPredictor,
    ),
    "compiled linear model": (
        _linear,
        lambda p: make_predictor(compile_checked(p, []).model),
        CompiledPredictor,
    ),
    "fast path, forest": (_forest, make_predictor, DictVectorizerPredictor),
    "fast path, linear model": (_linear, make_predictor, DictVectorizerPredictor),
    "generic, forest": (_forest, RecordsPredictor, RecordsPredictor),
}


@pytest.fixture(scope="module")
def trips():
    """A month to fit on, and another to score (many pairs the models never saw)."""
    train = prepared(2021, 1, rows=2_000)
    return train, prepared(2021, 2, rows=1_500)


@pytest.fixture(scope="module", params=list(CASES))
def runtime(request, trips):
    """(the runtime's name, its predictor, the pipeline it runs)."""
    make_pipeline_of, make, kind = CASES[request.param]
    train, _ = trips
    pipeline = make_pipeline_of().fit(
        features.feature_records(train), train[features.ACTUAL_DURATION].to_numpy()
    )
    predictor = make(pipeline)
    assert isinstance(predictor, kind), request.param
    return request.param, predictor, pipeline


def test_a_runtime_gives_the_models_own_predictions(runtime, trips):
    _, predictor, pipeline = runtime
    _, month = trips
    expected = pipeline.predict(features.feature_records(month, predictor.features))
    assert predictor.predict(month).tobytes() == np.asarray(expected, np.float64).tobytes()


def test_batches_and_online_rides_get_the_same_bits_as_a_whole_table(runtime, trips):
    _, predictor, _ = runtime
    _, month = trips
    whole = predictor.predict(month)
    cache = PredictionCache()
    batches = [predictor.predict_batch(month.slice(start, 400), cache) for start in (0, 400, 800)]
    rest = predictor.predict_batch(month.slice(1200), cache)
    in_batches = np.concatenate([b.values for b in [*batches, rest]])
    assert in_batches.tobytes() == whole.tobytes()
    online = predictor.predict_checked(check_rides(as_rides(month)))
    assert online.tobytes() == whole.tobytes()


def test_a_runtime_says_what_it_reads_and_how_it_predicts(runtime):
    name, predictor, _ = runtime
    assert set(predictor.features) <= set(features.ALL_FEATURES)
    assert predictor.path
    assert (predictor.path == name) == name.startswith("compiled")


def test_no_trips_get_no_predictions(runtime, trips):
    _, predictor, _ = runtime
    _, month = trips
    assert predictor.predict(month.slice(0, 0)).shape == (0,)
    assert predictor.predict_batch(month.slice(0, 0)).values.shape == (0,)


def test_every_runtime_of_the_registry_keeps_the_contract():
    assert {kind for _, _, kind in CASES.values()} == set(RUNTIMES)


def test_each_runtime_declines_the_models_it_does_not_serve(trips):
    train, _ = trips
    pipeline = _forest().fit(
        features.feature_records(train), train[features.ACTUAL_DURATION].to_numpy()
    )
    compiled = compile_checked(pipeline, []).model
    assert CompiledPredictor.for_model(pipeline, None) is None
    assert DictVectorizerPredictor.for_model(compiled, None) is None
    assert DictVectorizerPredictor.for_model(pipeline[-1], None) is None  # no vectorizer
    assert isinstance(RecordsPredictor.for_model(pipeline[-1], None), RecordsPredictor)
