"""Predictions and the output table: `ride_duration.model.predictors`."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from sklearn.ensemble import RandomForestRegressor
from sklearn.feature_extraction import DictVectorizer, FeatureHasher
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from ride_duration.data import features, layouts
from ride_duration.model.predictors import make_predictor
from ride_duration.model.runtimes.pipeline import DictVectorizerPredictor
from ride_duration.model.runtimes.records import RecordsPredictor
from tests.support import rides

WITH_DISTANCE = features.ALL_FEATURES
PU_DO_ONLY = (features.PU_DO,)
DISTANCE_ONLY = (layouts.DISTANCE,)


def prepared(taxi_type: str, year: int, month: int, rows: int, names=WITH_DISTANCE) -> pa.Table:
    return rides.prepared(year, month, rows, taxi_type, names)


def with_unknown_locations(trips: pa.Table, every: int) -> pa.Table:
    """`trips` with the pickup id of every `every`-th row and the dropoff id of the next null."""
    n = trips.num_rows
    positions = np.arange(n)
    for name, offset in ((layouts.PICKUP_LOCATION, 0), (layouts.DROPOFF_LOCATION, 1)):
        nulls = pa.array((positions + offset) % every == 0)
        column = pc.if_else(nulls, pa.scalar(None, pa.int64()), trips[name])
        trips = trips.set_column(trips.schema.get_field_index(name), name, column)
    return trips


def odd_trips() -> pa.Table:
    """Hand-made trips: unknown pairs, unknown locations, huge ids, zero distance."""
    pu = [43, None, 43, None, 300, 2**40, 2**31 - 1, 1, 59, 0]
    do = [151, 7, None, None, 301, 5, 2, 2**40, 59, 0]
    n = len(pu)
    return pa.table(
        {
            layouts.PICKUP: pa.array([datetime(2021, 2, 3, 4, 5)] * n, pa.timestamp("us")),
            layouts.PICKUP_LOCATION: pa.array(pu, pa.int64()),
            layouts.DROPOFF_LOCATION: pa.array(do, pa.int64()),
            layouts.DISTANCE: pa.array([0.0, 1.0, 2.5, 3.0, 4.0, 0.5, 1.5, 2.0, 10.0, 0.0]),
            features.ACTUAL_DURATION: pa.array([10.0] * n),
            features.ROW_NUMBER: pa.array(np.arange(n, dtype=np.int64)),
        }
    )


@pytest.fixture(scope="module")
def train_trips() -> pa.Table:
    return prepared("green", 2021, 1, rows=2_000)


@pytest.fixture(scope="module")
def score_trips() -> pa.Table:
    """Another month (many pairs the models never saw) plus the hand-made odd trips."""
    february = with_unknown_locations(prepared("green", 2021, 2, rows=1_500), every=17)
    return pa.concat_tables([february, odd_trips()])


@pytest.fixture(scope="module")
def fhv_train_trips() -> pa.Table:
    return prepared("fhv", 2021, 1, rows=2_000, names=PU_DO_ONLY)


@pytest.fixture(scope="module")
def fhv_score_trips() -> pa.Table:
    february = prepared("fhv", 2021, 2, rows=1_500, names=PU_DO_ONLY)
    return pa.concat_tables([february, odd_trips().select(february.column_names)])


def fit(pipeline: Pipeline, trips: pa.Table, names: tuple[str, ...]) -> Pipeline:
    return pipeline.fit(
        features.feature_records(trips, names), trips[features.ACTUAL_DURATION].to_numpy()
    )


def small_forest() -> RandomForestRegressor:
    return RandomForestRegressor(n_estimators=5, max_depth=8, min_samples_leaf=3, random_state=0)


# name -> (pipeline factory, training data: "green", "green-unknown" or "fhv", features)
PIPELINES = {
    "forest": (lambda: make_pipeline(DictVectorizer(), small_forest()), "green", WITH_DISTANCE),
    "linear": (lambda: make_pipeline(DictVectorizer(), LinearRegression()), "green", WITH_DISTANCE),
    "forest-trained-with-unknown-locations": (
        lambda: make_pipeline(DictVectorizer(), small_forest()),
        "green-unknown",
        WITH_DISTANCE,
    ),
    "linear-trained-with-unknown-locations": (
        lambda: make_pipeline(DictVectorizer(), LinearRegression()),
        "green-unknown",
        WITH_DISTANCE,
    ),
    "linear-float32": (
        lambda: make_pipeline(DictVectorizer(dtype=np.float32), LinearRegression()),
        "green",
        WITH_DISTANCE,
    ),
    "linear-unsorted-vocabulary": (
        lambda: make_pipeline(DictVectorizer(sort=False), LinearRegression()),
        "green",
        WITH_DISTANCE,
    ),
    "linear-distance-only": (
        lambda: make_pipeline(DictVectorizer(), LinearRegression()),
        "green",
        DISTANCE_ONLY,
    ),
    "linear-pu-do-only": (
        lambda: make_pipeline(DictVectorizer(), LinearRegression()),
        "green",
        PU_DO_ONLY,
    ),
    "fhv-forest-without-distance": (
        lambda: make_pipeline(DictVectorizer(), small_forest()),
        "fhv",
        PU_DO_ONLY,
    ),
    "fhv-linear-without-distance": (
        lambda: make_pipeline(DictVectorizer(), LinearRegression()),
        "fhv",
        PU_DO_ONLY,
    ),
}


@pytest.fixture(scope="module")
def pipelines(train_trips, fhv_train_trips) -> dict[str, Pipeline]:
    data = {
        "green": train_trips,
        "green-unknown": with_unknown_locations(train_trips, every=11),
        "fhv": fhv_train_trips,
    }
    return {
        name: fit(factory(), data[source], names)
        for name, (factory, source, names) in PIPELINES.items()
    }


@pytest.fixture(params=list(PIPELINES))
def case(request, pipelines, score_trips, fhv_score_trips):
    """(pipeline, trips to score, the features the pipeline was fitted on)."""
    _, source, names = PIPELINES[request.param]
    trips = fhv_score_trips if source == "fhv" else score_trips
    return pipelines[request.param], trips, names


def test_the_scored_trips_hold_the_awkward_cases(pipelines, score_trips):
    vocabulary = pipelines["forest"][0].vocabulary_
    keys = features.pu_do(score_trips).to_pylist()
    assert any(f"PU_DO={key}" not in vocabulary for key in keys)  # unknown pairs
    assert any(key.startswith("-1_") for key in keys)
    assert any(key.endswith("_-1") for key in keys)
    unknown_vocabulary = pipelines["forest-trained-with-unknown-locations"][0].vocabulary_
    assert any(name.startswith("PU_DO=-1_") for name in unknown_vocabulary)
    assert any(f"PU_DO={key}" in unknown_vocabulary for key in keys if "-1" in key)


def test_transform_equals_the_dict_vectorizer(case):
    pipeline, trips, names = case
    vectorizer = pipeline[0]
    fast = DictVectorizerPredictor(pipeline).transform(trips)
    slow = vectorizer.transform(features.feature_records(trips, names))
    assert fast.shape == slow.shape == (trips.num_rows, len(vectorizer.feature_names_))
    assert fast.dtype == slow.dtype
    assert (fast != slow).nnz == 0
    np.testing.assert_array_equal(fast.toarray(), slow.toarray())


def test_fast_and_generic_predictions_are_equal(case):
    pipeline, trips, names = case
    fast = make_predictor(pipeline)
    assert isinstance(fast, DictVectorizerPredictor)
    generic = RecordsPredictor(pipeline, names)
    fast_predictions = fast.predict(trips)
    generic_predictions = generic.predict(trips)
    assert fast_predictions.dtype == generic_predictions.dtype == np.float64
    assert fast_predictions.shape == (trips.num_rows,)
    np.testing.assert_allclose(fast_predictions, generic_predictions, rtol=0, atol=1e-9)
    np.testing.assert_allclose(
        fast_predictions,
        pipeline.predict(features.feature_records(trips, names)),
        rtol=0,
        atol=1e-9,
    )


def test_generic_path_with_all_features_ignores_ones_the_model_never_saw(pipelines, score_trips):
    pipeline = pipelines["linear-pu-do-only"]
    np.testing.assert_allclose(
        RecordsPredictor(pipeline).predict(score_trips),
        make_predictor(pipeline).predict(score_trips),
        rtol=0,
        atol=1e-9,
    )


@pytest.mark.parametrize(
    ("name", "names"),
    [
        ("forest", ("PU_DO", "trip_distance")),
        ("linear-distance-only", ("trip_distance",)),
        ("linear-pu-do-only", ("PU_DO",)),
        ("fhv-forest-without-distance", ("PU_DO",)),
    ],
)
def test_the_fast_path_asks_only_for_the_features_the_model_uses(pipelines, name, names):
    assert DictVectorizerPredictor(pipelines[name]).features == names


def test_the_fast_path_needs_no_distance_column_for_a_model_without_it(pipelines, fhv_score_trips):
    assert layouts.DISTANCE not in fhv_score_trips.column_names
    predictions = make_predictor(pipelines["fhv-linear-without-distance"]).predict(fhv_score_trips)
    assert predictions.shape == (fhv_score_trips.num_rows,)
    assert np.isfinite(predictions).all()


def test_unknown_pairs_get_no_column(pipelines):
    trips = odd_trips()
    pipeline = pipelines["linear"]
    matrix = DictVectorizerPredictor(pipeline).transform(trips)
    distance_column = pipeline[0].vocabulary_[layouts.DISTANCE]
    keys = features.pu_do(trips).to_pylist()
    for row, key in enumerate(keys):
        columns = set(matrix[row].indices) - {distance_column}
        if f"PU_DO={key}" in pipeline[0].vocabulary_:
            assert columns == {pipeline[0].vocabulary_[f"PU_DO={key}"]}
        else:
            assert columns == set()


@pytest.mark.parametrize("name", ["linear", "forest-trained-with-unknown-locations"])
def test_ids_beyond_32_bits_never_alias_a_known_pair(pipelines, train_trips, name):
    # 2**32 + 43 must not be taken for 43, nor (p, 2**32 + d) for (p + 1, d)
    pipeline = pipelines[name]
    known = train_trips.slice(0, 20)
    pu = known[layouts.PICKUP_LOCATION].to_numpy()
    do = known[layouts.DROPOFF_LOCATION].to_numpy()
    trips = pa.concat_tables(
        [
            known.set_column(1, layouts.PICKUP_LOCATION, pa.array(pu + 2**32)),
            known.set_column(1, layouts.PICKUP_LOCATION, pa.array(pu - 1)).set_column(
                2, layouts.DROPOFF_LOCATION, pa.array(do + 2**32)
            ),
        ]
    )
    assert trips.column_names[1:3] == [layouts.PICKUP_LOCATION, layouts.DROPOFF_LOCATION]
    fast = DictVectorizerPredictor(pipeline).transform(trips)
    slow = pipeline[0].transform(features.feature_records(trips))
    assert (fast != slow).nnz == 0
    np.testing.assert_array_equal(fast.toarray(), slow.toarray())


def test_fast_path_matches_a_dense_dict_vectorizer_pipeline(train_trips, score_trips):
    pipeline = fit(
        make_pipeline(DictVectorizer(sparse=False), StandardScaler(), LinearRegression()),
        train_trips.slice(0, 200),  # small: a dense matrix of every known pair
        WITH_DISTANCE,
    )
    np.testing.assert_allclose(
        make_predictor(pipeline).predict(score_trips),
        RecordsPredictor(pipeline).predict(score_trips),
        rtol=0,
        atol=1e-9,
    )


# --- make_predictor ------------------------------------------------------------------------


class DoubleDistance:
    """A model that is no Pipeline: predict(list of feature dicts)."""

    def __init__(self) -> None:
        self.seen: list[dict] = []

    def predict(self, records: list[dict]) -> list[float]:
        self.seen = records
        return [2 * record.get(layouts.DISTANCE, 0.0) for record in records]


@pytest.mark.parametrize(
    ("model", "fast"),
    [
        (Pipeline([("dv", DictVectorizer()), ("lr", LinearRegression())]), True),
        (make_pipeline(DictVectorizer(), small_forest()), True),
        (make_pipeline(FeatureHasher(n_features=64, input_type="dict"), LinearRegression()), False),
        (Pipeline([("inner", make_pipeline(DictVectorizer(), LinearRegression()))]), False),
        (DoubleDistance(), False),
        (DictVectorizer(), False),
    ],
    ids=["dv-linear", "dv-forest", "hasher-linear", "nested-pipeline", "plain-object", "bare-dv"],
)
def test_make_predictor_takes_the_fast_path_only_for_a_dict_vectorizer_pipeline(
    model, fast, train_trips
):
    if isinstance(model, Pipeline):
        model = fit(model, train_trips, WITH_DISTANCE)
    predictor = make_predictor(model)
    assert isinstance(predictor, DictVectorizerPredictor) is fast
    assert isinstance(predictor, RecordsPredictor) is not fast


@pytest.mark.parametrize(
    "factory",
    [
        lambda: make_pipeline(FeatureHasher(n_features=64, input_type="dict"), LinearRegression()),
        lambda: Pipeline([("inner", make_pipeline(DictVectorizer(), LinearRegression()))]),
    ],
)
def test_the_generic_path_gives_the_models_own_predictions(factory, train_trips, score_trips):
    model = fit(factory(), train_trips, WITH_DISTANCE)
    np.testing.assert_array_equal(
        make_predictor(model).predict(score_trips),
        model.predict(features.feature_records(score_trips, WITH_DISTANCE)),
    )


@pytest.mark.parametrize(
    ("available", "keys"),
    [(WITH_DISTANCE, ["PU_DO", "trip_distance"]), (PU_DO_ONLY, ["PU_DO"])],
)
def test_the_generic_path_passes_the_available_features(available, keys, score_trips):
    model = DoubleDistance()
    predictor = make_predictor(model, available)
    assert predictor.features == available
    predictions = predictor.predict(score_trips)
    assert [list(record) for record in model.seen] == [keys] * score_trips.num_rows
    assert predictions.dtype == np.float64
    assert predictions.shape == (score_trips.num_rows,)
    if layouts.DISTANCE in keys:
        np.testing.assert_array_equal(predictions, 2 * score_trips[layouts.DISTANCE].to_numpy())


def test_a_big_batch_on_several_threads_is_bitwise_the_forest_with_one_job():
    """Blocks of rows on threads, each with n_jobs=1: exact, unlike the forest's n_jobs=-1."""
    import copy

    from ride_duration.model.runtimes.pipeline import MIN_BLOCK_ROWS

    rng = np.random.default_rng(3)
    n = 4 * MIN_BLOCK_ROWS + 123
    pickup, dropoff, distance = rng.integers(1, 40, n), rng.integers(1, 40, n), rng.gamma(2, 1.5, n)
    records = [
        {"PU_DO": f"{a}_{b}", "trip_distance": float(d)}
        for a, b, d in zip(pickup, dropoff, distance, strict=True)
    ]
    target = distance * 3 + pickup % 7
    forest = RandomForestRegressor(n_estimators=12, max_depth=10, random_state=0, n_jobs=-1)
    pipeline = make_pipeline(DictVectorizer(), forest).fit(records, target)
    one_job = copy.deepcopy(pipeline)
    one_job.steps[-1][1].n_jobs = 1
    expected = one_job.predict(records)

    predictor = make_predictor(pipeline)
    got = predictor._predict_rows(*predictor.encode(_trips_of(records)))
    assert got.tobytes() == expected.tobytes()
    assert pipeline.steps[-1][1].n_jobs == -1  # the shared model is left as trained


def _trips_of(records: list[dict]) -> pa.Table:
    pu, do = zip(*(r["PU_DO"].split("_") for r in records), strict=True)
    return pa.table(
        {
            layouts.PICKUP_LOCATION: pa.array([int(x) for x in pu], pa.int64()),
            layouts.DROPOFF_LOCATION: pa.array([int(x) for x in do], pa.int64()),
            layouts.DISTANCE: pa.array([r["trip_distance"] for r in records], pa.float64()),
        }
    )


# The cases a compiled form exists for: every forest and every float64 linear model.
COMPILED = {
    name: "compiled forest" if "forest" in name else "compiled linear model"
    for name in PIPELINES
    if name != "linear-float32"
}


@pytest.mark.parametrize("name", list(PIPELINES))
def test_the_compiled_path_is_the_pipeline_bit_for_bit(
    name, pipelines, score_trips, fhv_score_trips
):
    """One predictor for every compiled kind: a forest's n_jobs=1 answers, a linear model's
    own answers, on trips (unseen pairs, unknown locations, zero distances)."""
    from ride_duration.model.compiling import compile_checked
    from ride_duration.model.runtimes.compiled import CompiledPredictor

    _, source, names = PIPELINES[name]
    trips = fhv_score_trips if source == "fhv" else score_trips
    pipeline = pipelines[name]
    compiled = compile_checked(pipeline, [])  # probe rows only: these trips hold huge ids
    if name not in COMPILED:
        assert compiled is None  # a float32 vectorizer: sums in another precision
        return
    predictor = make_predictor(compiled.model)
    assert isinstance(predictor, CompiledPredictor)
    assert predictor.path == COMPILED[name]
    assert predictor.features == make_predictor(pipeline).features
    expected = make_predictor(pipeline).predict(trips)  # n_jobs=1 per block
    assert predictor.predict(trips).tobytes() == expected.tobytes()
    batch = predictor.predict_batch(trips)
    assert batch.values.tobytes() == expected.tobytes()
    assert batch.unknown_pairs == make_predictor(pipeline).predict_batch(trips).unknown_pairs
    if "linear" in name:  # the forest with n_jobs=-1 is not the reference
        records = features.feature_records(trips, names)
        assert predictor.predict(trips).tobytes() == pipeline.predict(records).tobytes()
