"""The scikit-learn runtime for Pipeline(DictVectorizer, ...): sparse features without dicts.

The sparse matrix is built straight from the vectorizer's vocabulary with numpy, with no dict
per trip, and each distinct feature row is predicted once (per call, or per month with a
cache), in blocks on several threads with the model's n_jobs=1, which keeps the answers exact.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from ride_duration.data.rules import CheckedRides
from ride_duration.forest.reference import vectorizer_rows, with_one_job
from ride_duration.forest.vocabulary import PairVocabulary
from ride_duration.model.distinct import PredictionCache, predict_distinct
from ride_duration.model.runtimes.base import BatchPredictions, encode, encode_trips, unknown_pairs

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa
    import scipy.sparse as sp


class DictVectorizerPredictor:
    """The fast path for Pipeline(DictVectorizer, ...): sparse features without dicts.

    The vectorizer's vocabulary maps "PU_DO=<pu>_<do>" and "trip_distance" to columns. Each
    trip's (pickup, dropoff) pair is looked up among the known pairs; unknown pairs get no
    column, exactly as DictVectorizer ignores unseen keys.
    """

    path = "scikit-learn (DictVectorizer fast path)"

    @classmethod
    def for_model(
        cls, model: Any, available: tuple[str, ...] | None = None
    ) -> DictVectorizerPredictor | None:
        """This runtime for a Pipeline whose first step is a DictVectorizer; None otherwise."""
        from sklearn.feature_extraction import DictVectorizer
        from sklearn.pipeline import Pipeline

        if isinstance(model, Pipeline) and isinstance(model.steps[0][1], DictVectorizer):
            return cls(model)
        return None

    def __init__(self, pipeline: Any) -> None:
        vectorizer = pipeline.steps[0][1]
        self.rest = _one_job(pipeline[1:])
        self.dtype = vectorizer.dtype
        self.sparse = vectorizer.sparse
        self.vocabulary = PairVocabulary.from_dict_vectorizer(vectorizer)
        self.features = self.vocabulary.features

    def encode(self, trips: pa.Table) -> tuple[np.ndarray, np.ndarray | None]:
        """Each trip's vocabulary column for its PU_DO pair (-1: unknown) and its distance."""
        return encode_trips(self.vocabulary, self.features, trips)

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
        encoded = encode(
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
        return BatchPredictions(values, unknown_pairs(pair_column, self.features))

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
