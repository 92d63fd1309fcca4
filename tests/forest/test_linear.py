"""The compiled linear model (`forest.linear`): bit for bit scikit-learn, as plain arrays."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from sklearn.ensemble import RandomForestRegressor
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MaxAbsScaler

from ride_duration.data import features, layouts
from ride_duration.forest import linear, npz
from ride_duration.forest.errors import CompiledMismatchError, NotCompilableError
from tests.conftest import REPO
from tests.forest.test_npz import metadata_with, rewrite
from tests.support.forests import (
    BOTH,
    FLOAT32_MAX,
    assert_same_bits,
    durations,
    make_rides,
    records,
)

# name -> (pipeline factory, features it is fitted on)
MODELS = {
    "pairs and distance": (lambda: make_pipeline(DictVectorizer(), LinearRegression()), BOTH),
    "no intercept": (
        lambda: make_pipeline(DictVectorizer(), LinearRegression(fit_intercept=False)),
        BOTH,
    ),
    # Columns in the order first seen: the distance column comes before most pair columns.
    "unsorted vocabulary": (
        lambda: make_pipeline(DictVectorizer(sort=False), LinearRegression()),
        BOTH,
    ),
    "fhv: pairs only": (
        lambda: make_pipeline(DictVectorizer(), LinearRegression()),
        (features.PU_DO,),
    ),
    "distance only": (
        lambda: make_pipeline(DictVectorizer(), LinearRegression()),
        (layouts.DISTANCE,),
    ),
}
# Zero (both signs), subnormal, tiny, huge (past float32, and past float64 once multiplied),
# negative: scikit-learn takes every finite distance.
SPECIAL_DISTANCES = np.array(
    [0.0, -0.0, 5e-324, 1e-310, 1e-300, 1e-7, FLOAT32_MAX, 1e300, 1.7e308, -1.0, -1e300]
)
ROWS = 30_000


@pytest.fixture(scope="module")
def pipelines():
    pickup, dropoff, distance = make_rides(3_000, seed=11, locations=12)
    # A large offset and scale: the intercept dwarfs the terms, so each rounding shows.
    target = 1234.5 + 3.7 * durations(pickup, dropoff, distance, seed=12)
    return {
        name: factory().fit(records(pickup, dropoff, distance, names), target)
        for name, (factory, names) in MODELS.items()
    }


@pytest.fixture(scope="module")
def compiled(pipelines):
    return {name: linear.compile_pipeline(pipeline) for name, pipeline in pipelines.items()}


@pytest.fixture(scope="module")
def score_rides():
    """Many rides, with locations never trained on (unseen pairs) and every special distance."""
    pickup, dropoff, distance = make_rides(ROWS, seed=13, locations=15)
    distance[::7] = np.resize(SPECIAL_DISTANCES, len(distance[::7]))
    return pickup, dropoff, distance


def sklearn_bits(pipeline, pickup, dropoff, distance, names) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):  # its finiteness test sums huge values
        return pipeline.predict(records(pickup, dropoff, distance, names))


@pytest.mark.parametrize("name", list(MODELS))
def test_the_compiled_model_is_scikit_learn_bit_for_bit(name, pipelines, compiled, score_rides):
    pickup, dropoff, distance = score_rides
    model = compiled[name]
    pairs = model.vocabulary.encode(pickup, dropoff)
    got = model.predict(pairs, distance)
    expected = sklearn_bits(pipelines[name], pickup, dropoff, distance, MODELS[name][1])
    assert_same_bits(got, expected)
    if features.PU_DO in MODELS[name][1]:
        assert 0 < (pairs < 0).sum() < ROWS  # unseen pairs and known ones
    if layouts.DISTANCE in MODELS[name][1]:
        assert np.isinf(got).any()  # 1.7e308 x a coefficient above 1 overflows in both


def test_the_order_of_operations_shows_in_the_bits(pipelines, compiled, score_rides):
    """Teeth: the intercept added first, or the distance cast to float32 as a forest does,
    changes many rows, so the test above would catch either."""
    pickup, dropoff, distance = score_rides
    model = compiled["pairs and distance"]
    pairs = model.vocabulary.encode(pickup, dropoff)
    ordinary = np.abs(distance) < 1e3  # no overflow
    pair_term = np.where(pairs >= 0, model.coef[np.maximum(pairs, 0)], 0.0)
    with np.errstate(over="ignore"):
        distance_term = distance * model.coef[model.vocabulary.distance_column]
        as_float32 = distance.astype(np.float32).astype(np.float64)
    expected = sklearn_bits(pipelines["pairs and distance"], pickup, dropoff, distance, BOTH)
    intercept_first = (model.intercept + pair_term) + distance_term
    assert (intercept_first != expected)[ordinary].sum() > 100
    cast = (pair_term + as_float32 * model.coef[model.vocabulary.distance_column]) + model.intercept
    assert (cast != expected)[ordinary].sum() > 100


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_infinite_distances_are_refused_as_scikit_learn_refuses_them(
    bad, pipelines, compiled
):
    distance = np.array([1.0, bad, 2.0])
    pickup, dropoff = np.array([1, 2, 3]), np.array([1, 2, 3])
    model = compiled["pairs and distance"]
    with pytest.raises(ValueError, match=r"^1 distance\(s\) are NaN or infinite, which "):
        model.predict(model.vocabulary.encode(pickup, dropoff), distance)
    with pytest.raises(ValueError, match=r"Input X contains (NaN|infinity)"):
        sklearn_bits(pipelines["pairs and distance"], pickup, dropoff, distance, BOTH)


def test_a_model_without_distance_ignores_it(compiled):
    model = compiled["fhv: pairs only"]
    pairs = model.vocabulary.encode(np.array([1, 99]), np.array([1, 99]))
    assert model.predict(pairs).tobytes() == model.predict(pairs, np.array([np.nan] * 2)).tobytes()


@pytest.mark.parametrize(
    ("pairs", "distance", "error", "says"),
    [
        (np.array([0]), None, ValueError, "the model uses trip_distance"),
        (np.array([0.5]), np.array([1.0]), TypeError, "1-d integer array"),
        (np.array([-2]), np.array([1.0]), ValueError, "pair_column outside"),
        (np.array([0, 1]), np.array([1.0]), ValueError, "2 pair columns but distances"),
    ],
)
def test_what_is_no_encoded_ride_is_refused(compiled, pairs, distance, error, says):
    with pytest.raises(error, match=says):
        compiled["pairs and distance"].predict(pairs, distance)


def test_the_distance_column_is_no_pair_column(compiled):
    model = compiled["pairs and distance"]
    with pytest.raises(ValueError, match="not a pair's"):
        model.predict(np.array([model.vocabulary.distance_column]), np.array([1.0]))


ROWS_2 = [{features.PU_DO: f"{i % 5}_{i % 3}", layouts.DISTANCE: float(i % 7)} for i in range(60)]
TARGET_2 = np.arange(60, dtype=np.float64)


@pytest.mark.parametrize(
    ("factory", "target", "says"),
    [
        (lambda: make_pipeline(DictVectorizer(sparse=False), LinearRegression()), TARGET_2,
         "not sparse float64"),
        (lambda: make_pipeline(DictVectorizer(dtype=np.float32), LinearRegression()), TARGET_2,
         "not sparse float64"),
        (lambda: make_pipeline(DictVectorizer(), Ridge()), TARGET_2,
         "not a fitted LinearRegression"),
        (lambda: make_pipeline(DictVectorizer(), RandomForestRegressor(n_estimators=2)), TARGET_2,
         "not a fitted LinearRegression"),
        (lambda: make_pipeline(DictVectorizer(), MaxAbsScaler(), LinearRegression()), TARGET_2,
         "DictVectorizer, MaxAbsScaler, LinearRegression, not DictVectorizer + LinearRegression"),
        (lambda: make_pipeline(DictVectorizer(), LinearRegression()),
         np.column_stack([TARGET_2, TARGET_2]), "not single-output"),
        (lambda: LinearRegression(), None, "LinearRegression, not DictVectorizer"),
    ],
)  # fmt: skip
def test_what_it_does_not_repeat_exactly_is_not_compiled(factory, target, says):
    model = factory()
    if target is not None:
        model.fit(ROWS_2, target)
    with pytest.raises(NotCompilableError, match=re.escape(says)) as refused:
        linear.compile_pipeline(model)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("name", list(MODELS))
def test_verify_checks_training_and_probe_rows(name, pipelines, compiled):
    rows = records(*make_rides(500, seed=14, locations=12), MODELS[name][1])
    checked = linear.verify(compiled[name], pipelines[name], rows)
    pairs = len(compiled[name].vocabulary.pair_keys) + 1
    distances = len(linear.PROBE_DISTANCES) if layouts.DISTANCE in MODELS[name][1] else 1
    assert (checked.given_rows, checked.probe_rows) == (500, pairs * distances)
    assert checked.describe().startswith("bit for bit equal to scikit-learn on 500 training rows")


def one_ulp_off(model, monkeypatch):
    coef = model.coef.copy()
    column = int(model.vocabulary.pair_columns[0])
    coef[column] = np.nextafter(coef[column], np.inf)
    return linear.CompiledLinear(model.vocabulary, coef, model.intercept)


def intercept_first(model, monkeypatch):
    """The same arrays, summed in another order."""

    def predict(self, pair_column, distance=None):
        pairs = self.vocabulary.checked_columns(pair_column)
        total = np.full(len(pairs), self.intercept)
        total[pairs >= 0] += self.coef[pairs[pairs >= 0]]
        return total + distance * self.coef[self.vocabulary.distance_column]

    monkeypatch.setattr(linear.CompiledLinear, "predict", predict)
    return model


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (one_ulp_off, "the compiled coefficients are not the LinearRegression's"),
        (intercept_first, "the linear model differs from scikit-learn on "),
    ],
)
def test_a_model_one_bit_off_is_refused_saying_where(
    pipelines, compiled, monkeypatch, change, says
):
    off = change(compiled["pairs and distance"], monkeypatch)
    rows = records(*make_rides(500, seed=14, locations=12))
    with pytest.raises(CompiledMismatchError, match=re.escape(says)) as refused:
        linear.verify(off, pipelines["pairs and distance"], rows)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("name", list(MODELS))
def test_save_and_load_round_trip(name, compiled, score_rides, tmp_path):
    model = compiled[name]
    path = npz.save(model, tmp_path)
    assert path == tmp_path / linear.FILE_NAME == tmp_path / "linear.npz"
    with np.load(path, allow_pickle=False) as arrays:
        assert all(arrays[key].dtype != object for key in arrays.files)
        assert json.loads(arrays["metadata"].tobytes())["kind"] == "linear"
    loaded = npz.load(path, "linear")
    assert type(loaded) is linear.CompiledLinear
    assert loaded.coef.tobytes() == model.coef.tobytes()
    assert loaded.intercept == model.intercept
    assert type(npz.load(path, None)) is linear.CompiledLinear  # any kind
    pickup, dropoff, distance = score_rides
    assert_same_bits(
        loaded.predict(loaded.vocabulary.encode(pickup, dropoff), distance),
        model.predict(model.vocabulary.encode(pickup, dropoff), distance),
    )


CORRUPTIONS = {
    "truncated": (
        lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]),
        "is not a compiled linear model: ",
    ),
    "coef as float32": (
        lambda path: rewrite(path, lambda a: a.update(coef=a["coef"].astype(np.float32))),
        "is not a valid compiled linear model: coef is float32, not float64",
    ),
    "a coefficient NaN": (
        lambda path: rewrite(path, lambda a: a.update(coef=a["coef"] * np.nan)),
        "a coefficient or the intercept is not finite",
    ),
    "two intercepts": (
        lambda path: rewrite(path, lambda a: a.update(intercept=np.zeros(2))),
        "intercept has shape (2,), not (1,)",
    ),
    "missing coef": (lambda path: rewrite(path, lambda a: a.pop("coef")), "expected"),
    "coefficients of another width": (
        lambda path: rewrite(path, metadata_with(n_columns=10**6)),
        "coef has ",
    ),
    "the kind against the format": (
        lambda path: rewrite(path, metadata_with(kind="forest")),
        "names the format 'ride-duration-compiled-linear' but the kind 'forest'",
    ),
    "format version 2": (
        lambda path: rewrite(path, metadata_with(format_version=2)),
        "format version 2, this code reads 1",
    ),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_a_corrupt_file_is_refused_in_one_line(corruption, compiled, tmp_path):
    path = npz.save(compiled["pairs and distance"], tmp_path)
    corrupt, says = CORRUPTIONS[corruption]
    corrupt(path)
    with pytest.raises(ValueError, match=re.escape(str(path))) as refused:
        npz.load(path, "linear")
    message = str(refused.value)
    assert says in message
    assert "\n" not in message


def test_a_file_of_the_other_kind_is_refused_in_one_line(compiled, tmp_path):
    path = npz.save(compiled["pairs and distance"], tmp_path)
    with pytest.raises(ValueError, match="it holds a compiled linear model") as refused:
        npz.load(path)  # a compiled forest is asked for by default
    assert str(refused.value) == (
        f"{path} is not a valid compiled forest: it holds a compiled linear model, not a "
        "compiled forest"
    )


def test_loading_and_predicting_import_no_sklearn(compiled, tmp_path):
    path = npz.save(compiled["pairs and distance"], tmp_path)
    code = f"""
import sys
import numpy as np
from ride_duration.forest import npz
model = npz.load({str(path)!r}, "linear")
pairs = model.vocabulary.encode(np.array([3, 20]), np.array([4, 20]))
print(model.predict(pairs, np.array([2.5, 0.0])).tobytes().hex())
heavy = ("sklearn", "scipy", "pandas", "pyarrow", "mlflow")
assert not any(m.startswith(heavy) for m in sys.modules), sorted(sys.modules)
"""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    model = compiled["pairs and distance"]
    pairs = model.vocabulary.encode(np.array([3, 20]), np.array([4, 20]))
    assert done.stdout.split() == [model.predict(pairs, np.array([2.5, 0.0])).tobytes().hex()]
