"""Rides, forests and comparisons the forest tests share; scikit-learn's bits are the reference."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import RandomForestRegressor
from sklearn.feature_extraction import DictVectorizer
from sklearn.pipeline import make_pipeline
from sklearn.tree import DecisionTreeRegressor

from ride_duration.data import features, layouts
from ride_duration.forest.compiled import CompiledForest

BOTH = (features.PU_DO, layouts.DISTANCE)


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


def records(pickup, dropoff, distance, names=BOTH) -> list[dict]:
    rows = []
    for p, d, x in zip(pickup.tolist(), dropoff.tolist(), distance.tolist(), strict=True):
        row = {}
        if features.PU_DO in names:
            row[features.PU_DO] = f"{p}_{d}"
        if layouts.DISTANCE in names:
            row[layouts.DISTANCE] = x
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
    "pu-do-only": (lambda: make_pipeline(DictVectorizer(), forest_of(10, 10)), (features.PU_DO,)),
    "distance-only": (
        lambda: make_pipeline(DictVectorizer(), forest_of(10, 10)),
        (layouts.DISTANCE,),
    ),
}


def predict_both(model: CompiledForest, pickup, dropoff, distance, method):
    pairs = model.vocabulary.encode(pickup, dropoff)
    return model.predict(pairs, distance, method=method)


def sklearn_predict(reference, pickup, dropoff, distance, names) -> np.ndarray:
    return reference.predict(records(pickup, dropoff, distance, names))


def assert_same_bits(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.dtype == np.float64
    assert got.shape == expected.shape
    differ = np.flatnonzero(got.view(np.int64) != expected.view(np.int64))
    assert not len(differ), f"{len(differ)} rows differ, first {differ[0]}"
    assert got.tobytes() == expected.tobytes()


KNOWN = (3, 4)  # a pair of the training rides


def float32_below(x: np.ndarray) -> np.ndarray:
    """The largest float32 <= each x, as float64."""
    nearest = x.astype(np.float32)
    above = nearest.astype(np.float64) > x
    nearest[above] = np.nextafter(nearest[above], np.float32(-np.inf))
    return nearest.astype(np.float64)


def float32_step(x: np.ndarray, direction: float) -> np.ndarray:
    return np.nextafter(x.astype(np.float32), np.float32(direction)).astype(np.float64)
