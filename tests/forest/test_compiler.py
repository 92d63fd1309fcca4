"""Compiling a fitted pipeline (`forest.compiler`): what compiles, and why the rest does not."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import ExtraTreesRegressor
from sklearn.feature_extraction import DictVectorizer, FeatureHasher
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeRegressor

from ride_duration.data import layouts
from ride_duration.forest import compiler, errors
from tests.support.forests import durations, forest_of, records


def fitted(pipeline, rows: list[dict], target: np.ndarray):
    return pipeline.fit(rows, target)


def one_hot_split_at(threshold: float):
    def make(rows, target):
        pipeline = fitted(make_pipeline(DictVectorizer(), forest_of(3, 6)), rows, target)
        tree = pipeline[-1].estimators_[1].tree_
        distance_column = pipeline[0].vocabulary_[layouts.DISTANCE]
        node = np.flatnonzero((tree.feature >= 0) & (tree.feature != distance_column))[0]
        tree.threshold[node] = threshold
        return pipeline

    return make


def distance_split_at_infinity(rows, target):
    pipeline = fitted(make_pipeline(DictVectorizer(), forest_of(3, 6)), rows, target)
    tree = pipeline[-1].estimators_[0].tree_
    tree.threshold[np.flatnonzero(tree.feature == pipeline[0].vocabulary_[layouts.DISTANCE])[0]] = (
        np.inf
    )
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


def test_intervals_without_a_float32_get_a_harmless_point():
    cuts = np.array([0.5, 1.0, 1.0 + 2**-30, 1.0 + 2**-29, 2.0])  # 2 cuts inside one gap
    points = compiler.interval_points(cuts)
    assert np.all(points == points.astype(np.float32))
    # intervals 2 and 3 hold no float32 (the next one after 1.0 is 1 + 2**-23): no ride is
    # ever there, and their points fall in interval 4
    assert np.searchsorted(cuts, points).tolist() == [0, 1, 4, 4, 4, 5]
