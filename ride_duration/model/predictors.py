"""Predicting trip tables and checked rides: three paths, chosen in one place (`make_predictor`).

- a model's compiled form (`ride_duration.forest`: a forest or a linear model) is evaluated
  with numpy alone, bit for bit scikit-learn's n_jobs=1 answers;
- a scikit-learn Pipeline whose first step is a DictVectorizer takes the fast path: the sparse
  matrix is built straight from the vectorizer's vocabulary with numpy, with no dict per trip,
  and each distinct feature row is predicted once (per call, or per month with a cache);
- any other model gets one feature dict per trip, as it was trained (the generic path).

A predictor holds only what it was built from: it is safe to share between threads and
requests. The one piece of state, the month's prediction cache, is passed in by batch scoring.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ride_duration.data.rules import DISTANCE, DROPOFF_LOCATION, PICKUP_LOCATION, CheckedRides
from ride_duration.forest.npz import CompiledModel, kind_of
from ride_duration.forest.reference import vectorizer_rows, with_one_job
from ride_duration.forest.vocabulary import PU_DO, PairVocabulary
from ride_duration.model.distinct import PredictionCache, predict_distinct

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa
    import scipy.sparse as sp

# pyarrow and scipy are imported where used: --help and dry runs do not pay for them, and the
# serving install, which predicts checked rides with a compiled form, has neither.


@dataclass(frozen=True)
class BatchPredictions:
    """The predictions of a batch of trips, and how many had a pair the model never saw."""

    values: np.ndarray
    unknown_pairs: int | None  # None: the model's features say nothing about pairs


class Predictor(Protocol):
    """Predicts ride durations (minutes) for prepared trips."""

    features: tuple[str, ...]
    path: str  # how it predicts, for logs and manifests

    def predict(self, trips: pa.Table) -> np.ndarray:
        """The predictions, one per trip."""
        ...

    def predict_checked(self, rides: CheckedRides) -> np.ndarray:
        """The predictions of the kept rides of an online request or stream batch, in order."""
        ...

    def predict_batch(
        self, trips: pa.Table, cache: PredictionCache | None = None
    ) -> BatchPredictions:
        """The predictions of one batch of a month, with `cache` the month's cache."""
        ...


class RecordsPredictor:
    """The generic path: any model with `predict(list_of_feature_dicts)`."""

    path = "generic (one feature dict per trip)"

    def __init__(self, model: Any, features: tuple[str, ...] | None = None) -> None:
        from ride_duration.data.features import ALL_FEATURES

        self.model = model
        self.features = ALL_FEATURES if features is None else features

    def predict(self, trips: pa.Table) -> np.ndarray:
        """Predict from one feature dict per trip."""
        from ride_duration.data.features import feature_records

        if not trips.num_rows:  # scikit-learn refuses an empty sample; no trips, no predictions
            return np.empty(0, dtype=np.float64)
        predictions = self.model.predict(feature_records(trips, self.features))
        return np.asarray(predictions, dtype=np.float64).reshape(-1)

    def predict_checked(self, rides: CheckedRides) -> np.ndarray:
        """Predict checked rides as a table of trips (this path needs pyarrow anyway)."""
        from ride_duration.data.rides import checked_table

        return self.predict(checked_table(rides))

    def predict_batch(
        self, trips: pa.Table, cache: PredictionCache | None = None
    ) -> BatchPredictions:
        """As `predict`; an arbitrary model's pairs are unknown to us, and nothing is cached."""
        return BatchPredictions(self.predict(trips), None)


def _encode(
    vocabulary: PairVocabulary,
    features: tuple[str, ...],
    pickup: np.ndarray,
    dropoff: np.ndarray,
    distance: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Each ride's column for its pickup/dropoff pair (-1: a pair the model never saw) and its
    distance, for the features the model reads. Ids are int64, -1 for an unknown location."""
    if PU_DO in features:
        pair_column = vocabulary.encode(pickup, dropoff)
    else:
        pair_column = np.full(len(pickup), -1, dtype=np.int64)
    return pair_column, distance if DISTANCE in features else None


def _encode_trips(
    vocabulary: PairVocabulary, features: tuple[str, ...], trips: pa.Table
) -> tuple[np.ndarray, np.ndarray | None]:
    """`_encode` of a table of trips (a trip without a distance column has no distance)."""
    from ride_duration.data.features import location_ids

    distance = None
    if DISTANCE in features:
        distance = np.asarray(trips[DISTANCE].to_numpy(), dtype=np.float64)
    return _encode(
        vocabulary,
        features,
        location_ids(trips[PICKUP_LOCATION]),
        location_ids(trips[DROPOFF_LOCATION]),
        distance,
    )


def _unknown_pairs(pair_column: np.ndarray, features: tuple[str, ...]) -> int | None:
    """How many trips have a pair the model never saw: a quality metric of the month."""
    return int((pair_column < 0).sum()) if PU_DO in features else None


class CompiledPredictor:
    """A compiled form (`ride_duration.forest.npz.KINDS`): numpy only, scikit-learn's exact
    answers (a forest's with n_jobs=1).

    Each trip's pair is encoded by the model's own vocabulary and its distance passed as
    scikit-learn reads it; a whole month takes milliseconds.
    """

    def __init__(self, compiled: CompiledModel) -> None:
        kind = kind_of(compiled)
        if kind is None:
            raise TypeError(f"a {type(compiled).__name__} is no compiled kind")
        self.compiled = compiled
        self.features = compiled.features
        self.path = kind.noun  # "compiled forest", "compiled linear model"

    def encode(self, trips: pa.Table) -> tuple[np.ndarray, np.ndarray | None]:
        """Each trip's pair column (-1: unknown) and its distance."""
        return _encode_trips(self.compiled.vocabulary, self.features, trips)

    def predict(self, trips: pa.Table) -> np.ndarray:
        """The compiled model's predictions, one per trip."""
        return self.compiled.predict(*self.encode(trips))

    def predict_checked(self, rides: CheckedRides) -> np.ndarray:
        """The compiled model's predictions of checked rides, with numpy alone."""
        vocabulary, features = self.compiled.vocabulary, self.features
        return self.compiled.predict(
            *_encode(vocabulary, features, rides.pickup, rides.dropoff, rides.distance)
        )

    def predict_batch(
        self, trips: pa.Table, cache: PredictionCache | None = None
    ) -> BatchPredictions:
        """As `predict`, with the count of unseen pairs; a compiled model needs no cache."""
        pair_column, distance = self.encode(trips)
        predictions = self.compiled.predict(pair_column, distance)
        return BatchPredictions(predictions, _unknown_pairs(pair_column, self.features))


class DictVectorizerPredictor:
    """The fast path for Pipeline(DictVectorizer, ...): sparse features without dicts.

    The vectorizer's vocabulary maps "PU_DO=<pu>_<do>" and "trip_distance" to columns. Each
    trip's (pickup, dropoff) pair is looked up among the known pairs; unknown pairs get no
    column, exactly as DictVectorizer ignores unseen keys.
    """

    path = "scikit-learn (DictVectorizer fast path)"

    def __init__(self, pipeline: Any) -> None:
        vectorizer = pipeline.steps[0][1]
        self.rest = _one_job(pipeline[1:])
        self.dtype = vectorizer.dtype
        self.sparse = vectorizer.sparse
        self.vocabulary = PairVocabulary.from_dict_vectorizer(vectorizer)
        self.features = self.vocabulary.features

    def encode(self, trips: pa.Table) -> tuple[np.ndarray, np.ndarray | None]:
        """Each trip's vocabulary column for its PU_DO pair (-1: unknown) and its distance."""
        return _encode_trips(self.vocabulary, self.features, trips)

    def matrix(self, pair_column: np.ndarray, distance: np.ndarray | None) -> sp.csr_matrix:
        """The sparse rows of encoded trips: a 1 in the pair's column, the distance in its own."""
        return vectorizer_rows(self.vocabulary, self.dtype, pair_column, distance)

    def transform(self, trips: pa.Table) -> sp.csr_matrix:
        """The same matrix as `DictVectorizer.transform(feature_records(trips))`."""
        return self.matrix(*self.encode(trips))

    def predict(self, trips: pa.Table) -> np.ndarray:
        """Predict each distinct feature row of `trips` once."""
        return self.predict_batch(trips).values

    def predict_checked(self, rides: CheckedRides) -> np.ndarray:
        """Predict each distinct feature row of checked rides once."""
        encoded = _encode(
            self.vocabulary, self.features, rides.pickup, rides.dropoff, rides.distance
        )
        return predict_distinct(*encoded, self._predict_rows)

    def predict_batch(
        self, trips: pa.Table, cache: PredictionCache | None = None
    ) -> BatchPredictions:
        """Predict each distinct feature row once; rows `cache` saw earlier come from it."""
        pair_column, distance = self.encode(trips)
        if cache is None:
            values = predict_distinct(pair_column, distance, self._predict_rows)
        else:
            values = cache.predictions(pair_column, distance, self._predict_rows)
        return BatchPredictions(values, _unknown_pairs(pair_column, self.features))

    def _predict_rows(self, pair_column: np.ndarray, distance: np.ndarray | None) -> np.ndarray:
        """Predict rows in blocks on several threads, each block on one thread (exact)."""
        n = len(pair_column)
        workers = os.cpu_count() or 1
        if n < 2 * MIN_BLOCK_ROWS or workers == 1:
            return self._predict_block(pair_column, distance)
        # A few blocks per thread keep the threads busy to the end.
        size = max(MIN_BLOCK_ROWS, -(-n // (4 * workers)))
        parts = _threads().map(
            lambda start: self._predict_block(
                pair_column[start : start + size],
                None if distance is None else distance[start : start + size],
            ),
            range(0, n, size),
        )
        return np.concatenate(list(parts))

    def _predict_block(self, pair_column: np.ndarray, distance: np.ndarray | None) -> np.ndarray:
        matrix = self.matrix(pair_column, distance)
        if not self.sparse:  # DictVectorizer(sparse=False) hands its next step a dense array
            matrix = matrix.toarray()
        return np.asarray(self.rest.predict(matrix), dtype=np.float64).reshape(-1)


def make_predictor(model: Any, available: tuple[str, ...] | None = None) -> Predictor:
    """The fastest predictor that gives the model's own predictions: the one place it is chosen.

    A compiled form is evaluated with numpy alone; a Pipeline(DictVectorizer, ...) takes the
    fast path; any other model gets one feature dict per trip, of the `available` features
    (None: all of them).
    """
    if kind_of(model) is not None:
        return CompiledPredictor(model)
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.pipeline import Pipeline

    if isinstance(model, Pipeline) and isinstance(model.steps[0][1], DictVectorizer):
        return DictVectorizerPredictor(model)
    return RecordsPredictor(model, available)


# A big batch is predicted in blocks of at least this many rows on `_threads()`, each block with
# the model's n_jobs=1: every row then sums its trees in estimator order, so predictions are bit for
# bit those of n_jobs=1 (a forest's n_jobs=-1 adds trees in thread-completion order and changes
# the last bits from run to run), as fast as n_jobs=-1 (tree prediction releases the GIL), and
# a small call (one ride) pays no thread dispatch at all (~30 ms per call with n_jobs=-1).
MIN_BLOCK_ROWS = 8_192


@functools.cache
def _threads() -> ThreadPoolExecutor:
    """The process's prediction threads, one per core, made at the first big batch."""
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="predict")


def _one_job(steps: Any) -> Any:
    """The pipeline's steps with n_jobs=1 wherever a step has it (copies; the model is shared)."""
    from sklearn.pipeline import Pipeline

    return Pipeline([(name, with_one_job(step)) for name, step in steps.steps])
