"""The compiled forest (`ride_duration.forest`): bit for bit scikit-learn's n_jobs=1 predictions."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import ExtraTreesRegressor, RandomForestRegressor
from sklearn.feature_extraction import DictVectorizer, FeatureHasher
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeRegressor

from ride_duration.data import features as f
from ride_duration.data import layouts as t
from ride_duration.forest import compiler, errors, verify
from ride_duration.forest import npz as forest_file
from ride_duration.forest.compiled import _WALK_BLOCK, CompiledForest
from ride_duration.forest.vocabulary import (
    DISTANCE,
    PU_DO,
    UNKNOWN_LOCATION,
    PairVocabulary,
    encode_records,
    pair_key,
)
from ride_duration.model.compiling import compile_checked
from tests.conftest import REPO

BOTH = (f.PU_DO, t.DISTANCE)
METHODS = ("walk", "table")
FLOAT32_MAX = float(np.finfo(np.float32).max)


def make_rides(n: int, seed: int, locations: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pickup and dropoff ids (-1: unknown) and distances of three kinds, a third each:
    cents as the TLC writes them, floats between float32 neighbours, exact float32 values."""
    rng = np.random.default_rng(seed)
    pickup = rng.integers(-1, locations, n)
    dropoff = rng.integers(-1, locations, n)
    cents = rng.integers(0, 1_500, n) / 100
    uniform = rng.uniform(0, 15, n)
    exact = uniform.astype(np.float32).astype(np.float64)
    kind = rng.integers(0, 3, n)
    return pickup, dropoff, np.select([kind == 0, kind == 1], [cents, uniform], exact)


def records(pickup, dropoff, distance, features=BOTH) -> list[dict]:
    rows = []
    for p, d, x in zip(pickup.tolist(), dropoff.tolist(), distance.tolist(), strict=True):
        row = {}
        if f.PU_DO in features:
            row[f.PU_DO] = f"{p}_{d}"
        if t.DISTANCE in features:
            row[t.DISTANCE] = x
        rows.append(row)
    return rows


def durations(pickup, dropoff, distance, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, 1, len(pickup))
    return 2 + 3 * distance + (7 * pickup + 3 * dropoff) % 11 + noise


def forest_of(n_estimators: int, max_depth: int, kind=RandomForestRegressor, **options):
    return kind(
        n_estimators=n_estimators, max_depth=max_depth, random_state=0, n_jobs=-1, **options
    )


# name -> (pipeline factory, features it is fitted on)
MODELS = {
    "forest": (
        lambda: make_pipeline(DictVectorizer(), forest_of(12, 10, min_samples_leaf=3)),
        BOTH,
    ),
    "forest-dense-vectorizer": (
        lambda: make_pipeline(DictVectorizer(sparse=False), forest_of(8, 8, min_samples_leaf=2)),
        BOTH,
    ),
    "single-tree": (
        lambda: make_pipeline(
            DictVectorizer(), DecisionTreeRegressor(max_depth=12, random_state=0)
        ),
        BOTH,
    ),
    "pu-do-only": (lambda: make_pipeline(DictVectorizer(), forest_of(10, 10)), (f.PU_DO,)),
    "distance-only": (lambda: make_pipeline(DictVectorizer(), forest_of(10, 10)), (t.DISTANCE,)),
}


@pytest.fixture(scope="module")
def train_rides():
    return make_rides(3_000, seed=1, locations=12)


@pytest.fixture(scope="module")
def score_rides():
    """More rides than the walk takes all trees at once for, with locations never trained on."""
    pickup, dropoff, distance = make_rides(6_000, seed=2, locations=14)
    return pickup, dropoff, distance


@pytest.fixture(scope="module")
def pipelines(train_rides):
    pickup, dropoff, distance = train_rides
    target = durations(pickup, dropoff, distance, seed=3)
    return {
        name: factory().fit(records(pickup, dropoff, distance, features), target)
        for name, (factory, features) in MODELS.items()
    }


@pytest.fixture(scope="module")
def references(pipelines):
    """Each pipeline's copy predicting with n_jobs=1, the reference."""
    models = {}
    for name, pipeline in pipelines.items():
        model = copy.deepcopy(pipeline)
        if hasattr(model[-1], "n_jobs"):
            model[-1].set_params(n_jobs=1)
        models[name] = model
    return models


@pytest.fixture(scope="module")
def compiled(pipelines):
    return {name: compiler.compile_pipeline(pipeline) for name, pipeline in pipelines.items()}


def predict_both(model: CompiledForest, pickup, dropoff, distance, method):
    pairs = model.vocabulary.encode(pickup, dropoff)
    return model.predict(pairs, distance, method=method)


def sklearn_predict(reference, pickup, dropoff, distance, features) -> np.ndarray:
    return reference.predict(records(pickup, dropoff, distance, features))


def assert_same_bits(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.dtype == np.float64
    assert got.shape == expected.shape
    differ = np.flatnonzero(got.view(np.int64) != expected.view(np.int64))
    assert not len(differ), f"{len(differ)} rows differ, first {differ[0]}"
    assert got.tobytes() == expected.tobytes()


def test_names_agree_with_the_features_module():
    assert (PU_DO, DISTANCE) == (f.PU_DO, t.DISTANCE)
    assert UNKNOWN_LOCATION == f.UNKNOWN_LOCATION


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("method", METHODS)
def test_a_batch_is_sklearns_bit_for_bit(name, method, compiled, references, score_rides):
    pickup, dropoff, distance = score_rides
    expected = sklearn_predict(references[name], pickup, dropoff, distance, MODELS[name][1])
    got = predict_both(compiled[name], pickup, dropoff, distance, method)
    assert_same_bits(got, expected)


def test_the_score_rides_hold_the_awkward_cases(compiled, score_rides):
    model = compiled["forest"]
    pickup, dropoff, distance = score_rides
    pairs = model.vocabulary.encode(pickup, dropoff)
    valid = (pickup < 12) & (dropoff < 12)
    assert np.any(pairs < 0)
    assert np.all(pairs[valid] >= 0)
    assert np.any((pickup == -1) & (pairs >= 0))
    cuts = model.distance_cuts
    x32 = distance.astype(np.float32).astype(np.float64)
    assert np.any(np.isin(x32, cuts))  # ties: a distance's float32 on a threshold
    # float32 rounding moves some distances across a threshold
    assert np.any(np.searchsorted(cuts, x32) != np.searchsorted(cuts, distance))
    assert len(pairs) * len(model.roots) > _WALK_BLOCK  # the tree-by-tree walk


@pytest.mark.parametrize(
    ("pickup", "dropoff", "distance"),
    [
        (3, 4, 2.5),
        (-1, 5, 0.0),
        (7, -1, 1.23),
        (-1, -1, 12.0),
        (13, 13, 3.3),  # a pair never trained on
        (2**40, 3, 1.0),
        (4, 2**32 + 3, 1.0),  # would be key (4, 3) if the dropoff's bits spilled over
        (3, 4, -2.0),  # negative: refused by the product, still sklearn's value
        (3, 4, FLOAT32_MAX),
        (5, 6, 1e-45),
    ],
)
@pytest.mark.parametrize("method", METHODS)
def test_one_ride(pickup, dropoff, distance, method, compiled, references):
    ride = np.array([pickup]), np.array([dropoff]), np.array([distance])
    expected = sklearn_predict(references["forest"], *ride, BOTH)
    assert_same_bits(predict_both(compiled["forest"], *ride, method), expected)


def float32_below(x: np.ndarray) -> np.ndarray:
    """The largest float32 <= each x, as float64."""
    nearest = x.astype(np.float32)
    above = nearest.astype(np.float64) > x
    nearest[above] = np.nextafter(nearest[above], np.float32(-np.inf))
    return nearest.astype(np.float64)


def float32_step(x: np.ndarray, direction: float) -> np.ndarray:
    return np.nextafter(x.astype(np.float32), np.float32(direction)).astype(np.float64)


# Distances around each threshold t of the forest
AROUND_THRESHOLDS = {
    "on a float32 threshold": lambda cuts: cuts[cuts == float32_below(cuts)],
    "float64 just above a float32 threshold": lambda cuts: np.nextafter(
        cuts[cuts == float32_below(cuts)], np.inf
    ),
    "float32 at or below": float32_below,
    "float32 just above": lambda cuts: float32_step(float32_below(cuts), np.inf),
    "float32 two below": lambda cuts: float32_step(float32_below(cuts), -np.inf),
    "float32 two above": lambda cuts: float32_step(
        float32_step(float32_below(cuts), np.inf), np.inf
    ),
    "float64 between the float32 neighbours": lambda cuts: (
        (float32_below(cuts) + float32_step(float32_below(cuts), np.inf)) / 2
    ),
}


@pytest.mark.parametrize("kind", list(AROUND_THRESHOLDS))
@pytest.mark.parametrize("name", ["forest", "forest-dense-vectorizer", "distance-only"])
def test_both_sides_of_every_threshold(kind, name, compiled, references):
    model = compiled[name]
    distances = AROUND_THRESHOLDS[kind](model.distance_cuts)
    assert len(distances) > 10
    pairs = [(-1, -1), (3, 4), (20, 20)]  # known with unknown ids, known, unseen
    pickup = np.repeat([p for p, _ in pairs], len(distances))
    dropoff = np.repeat([d for _, d in pairs], len(distances))
    distance = np.tile(distances, len(pairs))
    expected = sklearn_predict(references[name], pickup, dropoff, distance, MODELS[name][1])
    for method in METHODS:
        assert_same_bits(predict_both(model, pickup, dropoff, distance, method), expected)


def test_float32_rounding_decides_some_rides(compiled, references):
    """A float64 distance just above a float32 threshold goes left, as the threshold does."""
    cuts = compiled["forest"].distance_cuts
    on = cuts[cuts == float32_below(cuts)]
    reference = references["forest"]
    ones = np.full(len(on), 3)
    at = sklearn_predict(reference, ones, ones + 1, on, BOTH)
    just_above = sklearn_predict(reference, ones, ones + 1, np.nextafter(on, np.inf), BOTH)
    next_float32 = sklearn_predict(reference, ones, ones + 1, float32_step(on, np.inf), BOTH)
    assert_same_bits(just_above, at)
    assert np.any(next_float32 != at)  # so a float64 comparison would have got them wrong


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 1e39, -1e39])
def test_bad_distances_raise_like_sklearn(value, method, compiled, references):
    distance = np.array([1.0, value, 2.0])
    pickup, dropoff = np.array([3, 4, 5]), np.array([4, 5, 6])
    with pytest.raises(ValueError, match="NaN, infinite or too large for float32"):
        predict_both(compiled["forest"], pickup, dropoff, distance, method)
    with pytest.raises(ValueError, match=r"(?i)infinity|NaN"), np.errstate(over="ignore"):
        sklearn_predict(references["forest"], pickup, dropoff, distance, BOTH)


def test_the_table_is_the_walk(compiled, score_rides):
    for name, model in compiled.items():
        pickup, dropoff, distance = score_rides
        walk = predict_both(model, pickup, dropoff, distance, "walk")
        assert_same_bits(predict_both(model, pickup, dropoff, distance, "table"), walk)
        assert model.table is not None, name


@pytest.mark.parametrize("name", list(MODELS))
def test_verify_passes_on_every_model(name, compiled, pipelines, train_rides):
    rows = records(*train_rides, MODELS[name][1])
    report = verify.verify(compiled[name], pipelines[name], rows)
    assert report.given_rows == len(rows)
    assert report.grid_rows >= report.pair_classes
    assert pipelines[name][-1].get_params().get("n_jobs") in (-1, None), "the caller's model"


def test_compile_checked_gives_the_verified_forest(pipelines, train_rides):
    model = compile_checked(pipelines["forest"], records(*train_rides)).forest
    assert model.table is not None
    assert model.n_estimators == 12


def test_the_probe_grid_covers_both_sides_of_every_threshold(compiled):
    model = compiled["forest"]
    grid = verify.probe_grid(model)
    below = float32_below(model.distance_cuts)
    sides = np.concatenate([below, float32_step(below, np.inf), [0.0, -1.0, FLOAT32_MAX]])
    for pair in [-1, *model.split_pair_columns.tolist()]:
        assert np.all(np.isin(sides, grid.distance[grid.pairs == pair])), pair
    assert grid.walk.all()  # a small model's grid is walked whole


def test_a_capped_probe_grid_keeps_every_threshold_for_the_first_pairs(compiled):
    model = compiled["forest"]
    grid = verify.probe_grid(model, max_rows=20_000, max_walk_rows=8_000)
    below = float32_below(model.distance_cuts)
    counts = {pair: np.sum(grid.pairs == pair) for pair in np.unique(grid.pairs).tolist()}
    full = [pair for pair, count in counts.items() if count >= 3 * len(below)]
    assert -1 in full
    assert len(full) >= 5
    for pair in counts:
        assert np.all(np.isin([0.0, FLOAT32_MAX], grid.distance[grid.pairs == pair]))
    assert len(counts) == len(model.split_pair_columns) + 1 + 8
    assert grid.walk.sum() <= max(8_000, sum(counts[pair] for pair in full))


def tampered(tamper: str, model, pipeline, train_rides):
    """`model` with one thing changed, that the first training ride sees."""
    pickup, dropoff, distance = (column[:1] for column in train_rides)
    if tamper == "leaf value":
        first = pipeline[0].transform(records(pickup, dropoff, distance))
        leaf = pipeline[-1].estimators_[0].apply(first)[0]  # tree 0 starts at node 0
        value = model.value.copy()
        value[leaf] += 0.5
        return replace(model, value=value)
    if tamper == "distance threshold":
        threshold = model.threshold.copy()
        node = np.flatnonzero(model.feature == model.vocabulary.distance_column)[0]
        threshold[node] += 1.0
        return replace(model, threshold=threshold, table=None)
    if tamper == "table value":
        pair = model.vocabulary.encode(pickup, dropoff)[0]
        table = model.table
        row = np.searchsorted(table.pair_columns, pair) + 1 if pair in table.pair_columns else 0
        values = table.values.copy()
        values[row, np.searchsorted(table.cuts, np.float32(distance[0]))] += 1.0
        return replace(model, table=replace(table, values=values))
    vocabulary = model.vocabulary
    columns = vocabulary.pair_columns.copy()
    columns[[0, 1]] = columns[[1, 0]]
    return replace(model, vocabulary=replace(vocabulary, pair_columns=columns))


@pytest.mark.parametrize(
    ("tamper", "with_rows", "message"),
    [
        ("leaf value", True, r"the walk differs from scikit-learn on \d+ of 3000 given rows; the"),
        ("leaf value", False, r"the walk differs from scikit-learn on \d+ of \d+ probe-grid rows"),
        ("distance threshold", True, r"the walk differs .* on \d+ of 3000 given rows"),
        ("distance threshold", False, r"the walk differs .* on \d+ of \d+ probe-grid rows"),
        ("table value", True, r"the table differs .* on \d+ of 3000 given rows"),
        ("table value", False, r"the table differs .* on [1-9]\d* of \d+ probe-grid rows"),
        ("vocabulary", False, "the compiled vocabulary is not the model's"),
    ],
)
def test_verify_refuses_a_tampered_compiled_forest(
    tamper, with_rows, message, compiled, pipelines, train_rides
):
    pipeline = pipelines["forest"]
    model = tampered(tamper, compiled["forest"], pipeline, train_rides)
    rows = records(*train_rides) if with_rows else []
    with pytest.raises(errors.CompiledMismatchError, match=message) as error:
        verify.verify(model, pipeline, rows)
    if tamper != "vocabulary":
        assert re.search(
            r"the first: (PU_DO=-?\d+_-?\d+ \(column \d+\)|an unseen pair), "
            r"distance [-\d.e+]+: scikit-learn [-\d.e+]+, compiled [-\d.e+]+$",
            str(error.value),
        )


def test_verify_a_forest_without_its_table(compiled, pipelines, train_rides):
    model = replace(compiled["forest"], table=None)
    report = verify.verify(model, pipelines["forest"], records(*train_rides))
    assert report.walk_grid_rows == report.grid_rows > 100_000
    assert report.thresholds == len(model.distance_cuts)


def fitted(pipeline, rows: list[dict], target: np.ndarray):
    return pipeline.fit(rows, target)


def one_hot_split_at(threshold: float):
    def make(rows, target):
        pipeline = fitted(make_pipeline(DictVectorizer(), forest_of(3, 6)), rows, target)
        tree = pipeline[-1].estimators_[1].tree_
        distance_column = pipeline[0].vocabulary_[t.DISTANCE]
        node = np.flatnonzero((tree.feature >= 0) & (tree.feature != distance_column))[0]
        tree.threshold[node] = threshold
        return pipeline

    return make


def distance_split_at_infinity(rows, target):
    pipeline = fitted(make_pipeline(DictVectorizer(), forest_of(3, 6)), rows, target)
    tree = pipeline[-1].estimators_[0].tree_
    tree.threshold[np.flatnonzero(tree.feature == pipeline[0].vocabulary_[t.DISTANCE])[0]] = np.inf
    return pipeline


def with_hour(rows, target):
    rows = [{**row, "hour": float(i % 24)} for i, row in enumerate(rows)]
    target = target + 30 * (np.arange(len(rows)) % 24 > 11)
    return fitted(make_pipeline(DictVectorizer(), forest_of(3, 6)), rows, target)


NOT_COMPILABLE = {
    "linear regression": (
        lambda rows, y: fitted(make_pipeline(DictVectorizer(), LinearRegression()), rows, y),
        "the model's last step is LinearRegression, not a random forest",
    ),
    "extra trees": (
        lambda rows, y: fitted(
            make_pipeline(DictVectorizer(), forest_of(3, 4, kind=ExtraTreesRegressor)), rows, y
        ),
        "the model's last step is ExtraTreesRegressor, not a random forest",
    ),
    "a random-split tree": (
        lambda rows, y: fitted(
            make_pipeline(DictVectorizer(), DecisionTreeRegressor(splitter="random")), rows, y
        ),
        r"a split on one-hot column PU_DO=-?\d+_-?\d+ has threshold 0\.\d+, not 0.5",
    ),
    "a bare forest": (
        lambda rows, y: forest_of(3, 4).fit(np.arange(len(y))[:, None], y),
        "the model is a RandomForestRegressor, not Pipeline",
    ),
    "three steps": (
        lambda rows, y: fitted(
            make_pipeline(DictVectorizer(), StandardScaler(with_mean=False), forest_of(3, 4)),
            rows,
            y,
        ),
        r"the pipeline has 3 steps \(DictVectorizer, StandardScaler, RandomForestRegressor\)",
    ),
    "feature hasher": (
        lambda rows, y: fitted(
            make_pipeline(FeatureHasher(n_features=64, input_type="dict"), forest_of(3, 4)),
            rows,
            y,
        ),
        "the pipeline's first step is FeatureHasher, not a DictVectorizer",
    ),
    "multi-output": (
        lambda rows, y: fitted(
            make_pipeline(DictVectorizer(), forest_of(3, 4)), rows, np.column_stack([y, y])
        ),
        r"multi-output \(2 outputs\)",
    ),
    "integer vectorizer": (
        lambda rows, y: fitted(
            make_pipeline(DictVectorizer(dtype=np.int64), forest_of(3, 4)), rows, y
        ),
        "the DictVectorizer's dtype is int64: it rounds distances",
    ),
    "unfitted": (
        lambda rows, y: make_pipeline(DictVectorizer(), forest_of(3, 4)),
        "the DictVectorizer is not fitted",
    ),
    "a feature the product never makes": (with_hour, "splits on column 'hour', which the product"),
    "one-hot threshold 0.7": (
        one_hot_split_at(0.7),
        r"a split on one-hot column PU_DO=-?\d+_-?\d+ has threshold 0.7, not 0.5",
    ),
    "missing-value routing": (
        distance_split_at_infinity,
        "splits trip_distance at inf: it routes missing values",
    ),
}


@pytest.mark.parametrize("case", list(NOT_COMPILABLE))
def test_what_is_not_a_compilable_forest_is_refused(case, train_rides):
    make, reason = NOT_COMPILABLE[case]
    pickup, dropoff, distance = (column[:500] for column in train_rides)
    model = make(records(pickup, dropoff, distance), durations(pickup, dropoff, distance, 0))
    with pytest.raises(errors.NotCompilableError, match=reason):
        compiler.compile_pipeline(model)


KNOWN = (3, 4)  # a pair of the training rides


@pytest.mark.parametrize(
    ("pickup", "dropoff", "dtype"),
    [
        (3, 4 + 2**32, np.int64),  # its high bit would spill into the pickup's field
        (3 + 2**32, 4, np.int64),
        (3 - 2**32, 4, np.int64),  # the same key modulo 2**64
        (3, 4 - 2**32, np.int64),
        (2**31 - 1, 4, np.int64),
        (-2, 4, np.int64),
        (2**64 - 1, 4, np.uint64),  # -1 once wrapped into int64
        (3, 2**64 - 1, np.uint64),
    ],
)
def test_ids_outside_the_key_range_are_unseen(pickup, dropoff, dtype, compiled):
    vocabulary = compiled["forest"].vocabulary
    known = vocabulary.encode(np.array([KNOWN[0]]), np.array([KNOWN[1]]))
    assert known[0] >= 0
    ids = np.array([pickup], dtype=dtype), np.array([dropoff], dtype=dtype)
    assert vocabulary.encode(*ids).tolist() == [-1]


def test_naive_keys_would_alias():
    keys = pair_key(np.array([2, 2]), np.array([4, 4 + 2**32]))
    assert keys[0] == keys[1]  # why encode checks ids before it computes keys


@pytest.mark.parametrize(
    ("key", "is_pair"),
    [
        ("1_2", True),
        ("-1_3", True),
        ("4_-1", True),
        ("05_3", False),  # int() reads these, the features never write them
        ("+5_3", False),
        (" 5_3", False),
        ("1_2_3", False),
        ("1_", False),
        ("x_y", False),
        ("4294967296_1", False),
        ("-2_1", False),
    ],
)
def test_the_vocabulary_holds_only_keys_the_features_produce(key, is_pair):
    rows = [{f.PU_DO: key}, {f.PU_DO: "7_8", t.DISTANCE: 1.0}, {"other": 2.0}]
    vectorizer = DictVectorizer().fit(rows)
    vocabulary = PairVocabulary.from_dict_vectorizer(vectorizer)
    assert len(vocabulary.pair_keys) == 1 + is_pair
    assert vocabulary.distance_column == vectorizer.vocabulary_[t.DISTANCE]
    assert vocabulary.describe(vectorizer.vocabulary_["PU_DO=7_8"]).startswith("PU_DO=7_8 ")


def test_intervals_without_a_float32_get_a_harmless_point():
    cuts = np.array([0.5, 1.0, 1.0 + 2**-30, 1.0 + 2**-29, 2.0])  # 2 cuts inside one gap
    points = compiler.interval_points(cuts)
    assert np.all(points == points.astype(np.float32))
    # intervals 2 and 3 hold no float32 (the next one after 1.0 is 1 + 2**-23): no ride is
    # ever there, and their points fall in interval 4
    assert np.searchsorted(cuts, points).tolist() == [0, 1, 4, 4, 4, 5]


@pytest.mark.parametrize(
    ("pair_column", "distance", "error", "match"),
    [
        (np.array([0.0]), np.array([1.0]), TypeError, "integer array"),
        (np.array([10**6]), np.array([1.0]), ValueError, "pair_column outside"),
        (np.array([-2]), np.array([1.0]), ValueError, "pair_column outside"),
        ("distance column", np.array([1.0]), ValueError, "not a pair's"),
        (np.array([-1]), None, ValueError, "give a distance"),
        (np.array([-1, -1]), np.array([1.0]), ValueError, "distances of shape"),
    ],
)
def test_predict_refuses_bad_input(pair_column, distance, error, match, compiled):
    model = compiled["forest"]
    if isinstance(pair_column, str):
        pair_column = np.array([model.vocabulary.distance_column])
    with pytest.raises(error, match=match):
        model.predict(pair_column, distance)


def test_predict_refuses_an_unknown_method_and_a_missing_table(compiled):
    model = compiled["forest"]
    with pytest.raises(ValueError, match="not 'auto', 'table' or 'walk'"):
        model.predict(np.array([-1]), np.array([1.0]), method="fast")
    with pytest.raises(ValueError, match="no lookup table"):
        replace(model, table=None).predict(np.array([-1]), np.array([1.0]), method="table")


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ({f.PU_DO: "3-4", t.DISTANCE: 1.0}, "not '<int>_<int>'"),
        ({f.PU_DO: 34, t.DISTANCE: 1.0}, "not '<int>_<int>'"),
        ({f.PU_DO: "3_4", t.DISTANCE: "1.0"}, "not a number"),
    ],
)
def test_encode_records_refuses_what_the_features_never_make(row, match, compiled):
    with pytest.raises(ValueError, match=match):
        encode_records(compiled["forest"].vocabulary, [row])


def test_encode_records_reads_rows_as_the_vectorizer_does(compiled):
    rows = [{f.PU_DO: "3_4", t.DISTANCE: 2}, {t.DISTANCE: 1.5}, {f.PU_DO: "3_4"}, {}]
    pairs, distance = encode_records(compiled["forest"].vocabulary, rows)
    known = compiled["forest"].vocabulary.encode(np.array([3]), np.array([4]))[0]
    assert pairs.tolist() == [known, -1, known, -1]
    assert distance.tolist() == [2.0, 1.5, 0.0, 0.0]


@pytest.mark.parametrize("name", list(MODELS))
def test_save_and_load_round_trip(name, compiled, score_rides, tmp_path):
    model = compiled[name]
    path = forest_file.save(model, tmp_path)
    assert path == tmp_path / forest_file.FILE_NAME
    with np.load(path, allow_pickle=False) as npz:
        assert all(npz[key].dtype != object for key in npz.files)
        assert npz["feature"].dtype == npz["pair_columns"].dtype == np.int32
    loaded = forest_file.load(path)
    for field in ("feature", "threshold", "left", "right", "value", "roots"):
        np.testing.assert_array_equal(getattr(loaded, field), getattr(model, field))
        assert getattr(loaded, field).dtype == getattr(model, field).dtype
    np.testing.assert_array_equal(loaded.vocabulary.pair_keys, model.vocabulary.pair_keys)
    np.testing.assert_array_equal(loaded.table.values, model.table.values)
    pickup, dropoff, distance = score_rides
    for method in METHODS:
        expected = predict_both(model, pickup, dropoff, distance, method)
        assert_same_bits(predict_both(loaded, pickup, dropoff, distance, method), expected)


def test_a_forest_without_its_table_round_trips(compiled, tmp_path):
    model = replace(compiled["forest"], table=None)
    loaded = forest_file.load(forest_file.save(model, tmp_path / "walk-only.npz"))
    assert loaded.table is None
    assert loaded.n_estimators == model.n_estimators == 12


def rewrite(path: Path, change) -> None:
    with np.load(path, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    change(arrays)
    with path.open("wb") as file:
        np.savez(file, **arrays)


def metadata_with(**changes):
    def change(arrays):
        metadata = json.loads(arrays["metadata"].tobytes()) | changes
        arrays["metadata"] = np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)

    return change


def child_before_parent(arrays):
    node = int(np.flatnonzero(arrays["left"] >= 0)[1])
    arrays["left"] = arrays["left"].copy()
    arrays["left"][node] = 0


CORRUPTIONS = {
    "truncated": (
        lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]),
        "is not a compiled forest",
    ),
    "not an npz": (lambda path: path.write_bytes(b"hello " * 100), "is not a compiled forest"),
    "pickled object array": (
        lambda path: np.save(path.open("wb"), np.array([{}], dtype=object), allow_pickle=True),
        "is not a compiled forest",
    ),
    "a single array": (
        lambda path: np.save(path.open("wb"), np.arange(3)),
        "a single array, not an .npz archive",
    ),
    "foreign npz": (lambda path: np.savez(path, x=np.arange(3)), "no metadata array"),
    "format version 2": (
        lambda path: rewrite(path, metadata_with(format_version=2)),
        "format version 2, this code reads 1",
    ),
    "another format": (
        lambda path: rewrite(path, metadata_with(format="something")),
        "does not name the format",
    ),
    "wrong dtype": (
        lambda path: rewrite(path, lambda a: a.update(feature=a["feature"].astype(np.int64))),
        "feature is int64, not int32",
    ),
    "missing array": (lambda path: rewrite(path, lambda a: a.pop("value")), "expected"),
    "child before parent": (
        lambda path: rewrite(path, child_before_parent),
        "child is outside its tree or before it",
    ),
    "table of another forest": (
        lambda path: rewrite(path, lambda a: a.update(table_cuts=a["table_cuts"] + 1.0)),
        "cuts are not the trees' distance thresholds",
    ),
    "n_estimators as a bool": (
        lambda path: rewrite(path, metadata_with(n_estimators=True)),
        "metadata n_estimators is True",
    ),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_a_corrupt_or_foreign_file_is_refused(corruption, compiled, tmp_path):
    path = forest_file.save(compiled["forest"], tmp_path / "forest.npz")
    corrupt, match = CORRUPTIONS[corruption]
    corrupt(path)
    with pytest.raises(ValueError, match=match) as error:
        forest_file.load(path)
    assert str(path) in str(error.value)


def test_loading_and_predicting_import_no_sklearn(compiled, tmp_path):
    path = forest_file.save(compiled["forest"], tmp_path)
    code = f"""
import sys
import numpy as np
from ride_duration.forest import npz as forest_file
model = forest_file.load({str(path)!r})
pairs = model.vocabulary.encode(np.array([3, 20]), np.array([4, 20]))
print(model.predict(pairs, np.array([2.5, 0.0])).tobytes().hex())
print(model.predict(pairs, np.array([2.5, 0.0]), method="walk").tobytes().hex())
heavy = ("sklearn", "scipy", "pandas", "pyarrow", "mlflow")
assert not any(m.startswith(heavy) for m in sys.modules), sorted(sys.modules)
"""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    model = compiled["forest"]
    expected = predict_both(
        model, np.array([3, 20]), np.array([4, 20]), np.array([2.5, 0.0]), "auto"
    )
    assert done.stdout.split() == [expected.tobytes().hex()] * 2
