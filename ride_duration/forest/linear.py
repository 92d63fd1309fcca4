"""The ride-duration linear model as plain numpy arrays, evaluated bit for bit like scikit-learn.

`CompiledLinear.predict` gives exactly what Pipeline(DictVectorizer, LinearRegression).predict
gives, because it does the same float operations in the same order. scikit-learn computes
`X @ coef_ + intercept_` with X the DictVectorizer's CSR matrix, and scipy's CSR product sums
each row's stored entries in column order starting from 0.0. A ride's row holds at most two
entries, 1.0 in its pair's column (none for an unseen pair) and its distance in the distance
column, so its answer is `((0.0 + coef_[pair]) + distance * coef_[distance column]) +
intercept_`, each operation rounded to float64 on its own (scipy's x86-64 wheels do not fuse
the multiply and the add; a build that did would be refused by `verify`). NaN and infinite
distances are refused, as scikit-learn refuses them; a finite distance of any size is taken
(the linear model, unlike the forest, does not cast it to float32).

This module is the whole compiled kind: the evaluator, its compiler and verifier (scikit-learn
imported inside them), and its arrays for `ride_duration.forest.npz`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ride_duration.forest.arrays import FLOAT32_MAX, check_array
from ride_duration.forest.errors import CompiledMismatchError, NotCompilableError
from ride_duration.forest.vocabulary import (
    DISTANCE,
    PU_DO,
    PairVocabulary,
    checked_distances,
    encode_records,
)

KIND = "linear"
FILE_NAME = "linear.npz"
# Probe distances: zero, tiny (subnormal) and huge ones, the float32 extremes, and ordinary
# miles; -1 too (the ride rules refuse it, scikit-learn does not).
PROBE_DISTANCES = (
    0.0, 5e-324, 1e-310, 1e-30, 0.01, 0.3, 1.0, 2.345, 3.66, 17.5, 123.456, 1e6,
    FLOAT32_MAX, 1e300, 1.7e308, -1.0,
)  # fmt: skip


@dataclass(frozen=True, eq=False)
class CompiledLinear:
    """A fitted LinearRegression after a DictVectorizer: its vocabulary, `coef` (one float64
    per vectorizer column) and `intercept`."""

    vocabulary: PairVocabulary
    coef: np.ndarray
    intercept: float

    def __post_init__(self) -> None:
        check_array("coef", self.coef, np.float64, self.vocabulary.n_columns)
        if not np.isfinite(self.coef).all() or not np.isfinite(self.intercept):
            raise ValueError("a coefficient or the intercept is not finite")

    @property
    def features(self) -> tuple[str, ...]:
        """The features the model reads."""
        return self.vocabulary.features

    def predict(self, pair_column: np.ndarray, distance: np.ndarray | None = None) -> np.ndarray:
        """The model's predictions (float64), exactly as scikit-learn's.

        `pair_column` holds each ride's one-hot column (`PairVocabulary.encode`, -1: unseen
        pair); `distance` each ride's trip_distance, required when the model uses it (else
        ignored). NaN and infinite distances raise ValueError.
        """
        pairs = self.vocabulary.checked_columns(pair_column)
        known = pairs >= 0
        total = np.zeros(len(pairs), dtype=np.float64)  # scipy's sum starts from 0.0
        total[known] += self.coef[pairs[known]]
        column = self.vocabulary.distance_column
        with np.errstate(over="ignore", invalid="ignore"):
            if column is not None:
                # A rounded product, then a rounded sum, as scipy's loop does. The two entries'
                # column order does not matter: (0 + a) + b is (0 + b) + a, bit for bit, for
                # every a and b (-0.0 included).
                miles = checked_distances(distance, len(pairs), as_float32=False)
                total += miles * self.coef[column]
            total += self.intercept
        return total


def compile_pipeline(pipeline: Any) -> CompiledLinear:
    """The CompiledLinear of a fitted Pipeline(DictVectorizer, LinearRegression).

    The vectorizer must be sparse (a dense matrix goes through BLAS, whose order of sums is
    its own) and float64; anything else raises NotCompilableError saying why.
    """
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import Pipeline

    steps = pipeline.steps if isinstance(pipeline, Pipeline) else []
    names = ", ".join(type(step).__name__ for _, step in steps) or type(pipeline).__name__
    if len(steps) != 2 or type(steps[0][1]) is not DictVectorizer:
        raise NotCompilableError(f"the model is {names}, not DictVectorizer + LinearRegression")
    vectorizer, regressor = steps[0][1], steps[1][1]
    if type(regressor) is not LinearRegression or not hasattr(regressor, "coef_"):
        raise NotCompilableError("the model's last step is not a fitted LinearRegression")
    if not hasattr(vectorizer, "vocabulary_"):
        raise NotCompilableError("the DictVectorizer is not fitted")
    if not vectorizer.sparse or np.dtype(vectorizer.dtype) != np.float64:
        raise NotCompilableError(
            "the DictVectorizer is not sparse float64: scikit-learn's sums would be BLAS's or "
            "another precision's, which the compiled form does not repeat"
        )
    vocabulary = PairVocabulary.from_dict_vectorizer(vectorizer)
    coef, intercept = np.asarray(regressor.coef_), np.asarray(regressor.intercept_)
    if coef.shape != (vocabulary.n_columns,) or intercept.shape != ():
        raise NotCompilableError(
            f"the LinearRegression has coefficients of shape {coef.shape}, not single-output "
            f"over the DictVectorizer's {vocabulary.n_columns} columns"
        )
    if coef.dtype != np.float64 or intercept.dtype != np.float64:
        raise NotCompilableError(f"the coefficients are {coef.dtype}, not float64")
    if not np.isfinite(coef).all() or not np.isfinite(intercept):
        raise NotCompilableError("a coefficient or the intercept is not finite")
    return CompiledLinear(vocabulary=vocabulary, coef=coef.copy(), intercept=float(intercept))


@dataclass(frozen=True)
class LinearVerification:
    """What `verify` compared with scikit-learn, bit for bit."""

    given_rows: int  # the rows passed in
    probe_rows: int  # every pair and an unseen one, at each of PROBE_DISTANCES

    def describe(self) -> str:
        """One line on what was checked."""
        return (
            f"bit for bit equal to scikit-learn on {self.given_rows:,} training rows and "
            f"{self.probe_rows:,} rows of every pickup/dropoff pair at {len(PROBE_DISTANCES)} "
            "distances"
        )


def verify(
    compiled: CompiledLinear, pipeline: Any, rows: Sequence[Mapping[str, Any]] = ()
) -> LinearVerification:
    """Check the compiled model against `pipeline.predict` on feature dicts, bit for bit: on
    `rows` (e.g. the training rows) and on probe rows (every known pair and an unseen one, at
    each of PROBE_DISTANCES). Raises CompiledMismatchError naming the first differing row."""
    fresh = compile_pipeline(pipeline)
    vocabulary = compiled.vocabulary
    same = (
        np.array_equal(vocabulary.pair_keys, fresh.vocabulary.pair_keys)
        and np.array_equal(vocabulary.pair_columns, fresh.vocabulary.pair_columns)
        and vocabulary.distance_column == fresh.vocabulary.distance_column
        and vocabulary.n_columns == fresh.vocabulary.n_columns
    )
    if not same:
        raise CompiledMismatchError("the compiled vocabulary is not the model's DictVectorizer's")
    if (compiled.coef.tobytes(), compiled.intercept) != (fresh.coef.tobytes(), fresh.intercept):
        raise CompiledMismatchError("the compiled coefficients are not the LinearRegression's")
    probes = probe_records(vocabulary)
    for label, records in (("given rows", rows), ("probe rows", probes)):
        if not len(records):
            continue
        with np.errstate(over="ignore", invalid="ignore"):
            expected = np.asarray(pipeline.predict(records), dtype=np.float64).reshape(-1)
        got = compiled.predict(*encode_records(vocabulary, records))
        if got.tobytes() != expected.tobytes():
            differ = got.view(np.int64) != expected.view(np.int64)
            row = int(np.argmax(differ))
            raise CompiledMismatchError(
                f"the linear model differs from scikit-learn on {int(differ.sum())} of "
                f"{len(got)} {label}; the first: {dict(records[row])}: scikit-learn "
                f"{float(expected[row])!r}, compiled {float(got[row])!r}"
            )
    return LinearVerification(given_rows=len(rows), probe_rows=len(probes))


def probe_records(vocabulary: PairVocabulary) -> list[dict[str, Any]]:
    """Feature dicts of every known pair and an unseen one, at every probe distance (each pair
    once when the model has no distance)."""
    pickup, dropoff = vocabulary.decode(vocabulary.pair_columns)
    pairs: list[dict[str, Any]] = [
        {PU_DO: f"{p}_{d}"} for p, d in zip(pickup, dropoff, strict=True)
    ]
    pairs.append({PU_DO: "-1_2147483646"})  # ids no vocabulary holds: an unseen pair
    if vocabulary.distance_column is None:
        return pairs
    return [pair | {DISTANCE: d} for pair in pairs for d in PROBE_DISTANCES]


def to_arrays(compiled: CompiledLinear) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The metadata and plain arrays `ride_duration.forest.npz` writes."""
    vocabulary = compiled.vocabulary
    metadata = {
        "n_columns": vocabulary.n_columns,
        "distance_column": vocabulary.distance_column,
    }
    arrays = {
        "pair_keys": vocabulary.pair_keys,
        "pair_columns": vocabulary.pair_columns.astype(np.int32),  # < n_columns < 2**31
        "coef": compiled.coef,
        "intercept": np.array([compiled.intercept]),
    }
    return metadata, arrays


ARRAY_DTYPES: dict[str, type[np.generic]] = {
    "pair_keys": np.int64,
    "pair_columns": np.int32,
    "coef": np.float64,
    "intercept": np.float64,
}
METADATA_TYPES: dict[str, type | tuple[type, ...]] = {
    "n_columns": int,
    "distance_column": (int, type(None)),
}


def from_arrays(metadata: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> CompiledLinear:
    """The CompiledLinear of arrays `ride_duration.forest.npz` read and checked for dtype."""
    vocabulary = PairVocabulary(
        pair_keys=arrays["pair_keys"],
        pair_columns=arrays["pair_columns"].astype(np.int64),
        distance_column=metadata["distance_column"],
        n_columns=metadata["n_columns"],
    )
    intercept = arrays["intercept"]
    if intercept.shape != (1,):
        raise ValueError(f"intercept has shape {intercept.shape}, not (1,)")
    return CompiledLinear(vocabulary=vocabulary, coef=arrays["coef"], intercept=float(intercept[0]))
