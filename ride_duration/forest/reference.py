"""scikit-learn's own predictions (n_jobs=1) on encoded rows.

What the compiler tabulates and the verifier compares with.

scikit-learn and scipy are imported inside the functions that use them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ride_duration.forest.errors import NotCompilableError
from ride_duration.forest.vocabulary import PairVocabulary

REFERENCE_BLOCK = 1 << 18


def with_one_job(estimator: Any) -> Any:
    """`estimator` with n_jobs=1: itself, or a shallow copy sharing its fitted trees.

    With more jobs a forest adds its trees in an order that varies from run to run.
    """
    if getattr(estimator, "n_jobs", 1) == 1:
        return estimator
    single = copy.copy(estimator)
    single.n_jobs = 1
    return single


def vectorizer_rows(
    vocabulary: PairVocabulary, dtype: Any, pairs: np.ndarray, distance: np.ndarray | None
) -> Any:
    """The DictVectorizer's sparse rows of encoded rides: a 1 in the pair's column (none for
    an unseen pair, -1), the distance in its own column."""
    import scipy.sparse as sp

    n = len(pairs)
    entries_columns, entries_values = [pairs], [np.ones(n, dtype=dtype)]
    counts = (pairs >= 0).astype(np.int64)
    if distance is not None:
        entries_columns.append(np.full(n, vocabulary.distance_column, dtype=np.int64))
        entries_values.append(distance.astype(dtype, copy=False))
        counts += 1
    columns = np.column_stack(entries_columns).ravel()
    values = np.column_stack(entries_values).ravel()
    present = columns >= 0
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return sp.csr_matrix(
        (values[present], columns[present], indptr), shape=(n, vocabulary.n_columns)
    )


class Reference:
    """scikit-learn's predictions with n_jobs=1, from a copy: the caller's model is untouched."""

    def __init__(self, pipeline: Any) -> None:
        vectorizer, regressor = pipeline_steps(pipeline)
        regressor = with_one_job(regressor)
        self.pipeline = copy.copy(pipeline)
        self.pipeline.steps = [pipeline.steps[0], (pipeline.steps[-1][0], regressor)]
        self.vectorizer, self.regressor = vectorizer, regressor
        self.vocabulary = PairVocabulary.from_dict_vectorizer(vectorizer)

    def predict_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The pipeline's predictions for feature dicts."""
        # As in predict_rows: the float32 extremes overflow scikit-learn's quick finiteness sum.
        with np.errstate(over="ignore", invalid="ignore"):
            out = [
                np.asarray(self.pipeline.predict(records[start : start + REFERENCE_BLOCK]))
                for start in range(0, len(records), REFERENCE_BLOCK)
            ]
        return np.concatenate(out).astype(np.float64, copy=False).reshape(-1)

    def predict_rows(self, pairs: np.ndarray, distance: np.ndarray | None) -> np.ndarray:
        """The forest's predictions for encoded rows, on the matrix the DictVectorizer makes."""
        dense = not self.vectorizer.sparse
        # A dense DictVectorizer hands the forest every column: keep those blocks small.
        block = max(1, (1 << 22) // max(self.vocabulary.n_columns, 1)) if dense else None
        block = block or REFERENCE_BLOCK
        out = np.empty(len(pairs), dtype=np.float64)
        for start in range(0, len(pairs), block):
            rows = slice(start, start + block)
            matrix = self._matrix(pairs[rows], None if distance is None else distance[rows])
            # scikit-learn's quick finiteness test sums X: the float32 extremes overflow that
            # sum (a warning only), and it then checks the values one by one.
            with np.errstate(over="ignore", invalid="ignore"):
                predictions = self.regressor.predict(matrix.toarray() if dense else matrix)
            out[rows] = np.asarray(predictions)
        return out

    def _matrix(self, pairs: np.ndarray, distance: np.ndarray | None) -> Any:
        """The DictVectorizer's rows, their column indices sorted as the vectorizer sorts them."""
        matrix = vectorizer_rows(self.vocabulary, self.vectorizer.dtype, pairs, distance)
        matrix.sort_indices()
        return matrix


def pipeline_steps(pipeline: Any) -> tuple[Any, Any]:
    """The fitted DictVectorizer and regressor of the pipeline, or NotCompilableError."""
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.pipeline import Pipeline

    if not isinstance(pipeline, Pipeline):
        raise NotCompilableError(
            f"the model is a {type(pipeline).__name__}, not Pipeline(DictVectorizer, forest)"
        )
    if len(pipeline.steps) != 2:
        names = ", ".join(type(step).__name__ for _, step in pipeline.steps)
        raise NotCompilableError(
            f"the pipeline has {len(pipeline.steps)} steps ({names}), not DictVectorizer + forest"
        )
    vectorizer, regressor = (step for _, step in pipeline.steps)
    if type(vectorizer) is not DictVectorizer:
        raise NotCompilableError(
            f"the pipeline's first step is {type(vectorizer).__name__}, not a DictVectorizer"
        )
    if type(regressor) not in _regressor_types():
        raise NotCompilableError(
            f"the model's last step is {type(regressor).__name__}, not a random forest"
        )
    if not hasattr(vectorizer, "vocabulary_"):
        raise NotCompilableError("the DictVectorizer is not fitted")
    if np.dtype(vectorizer.dtype) not in (np.float32, np.float64):
        raise NotCompilableError(
            f"the DictVectorizer's dtype is {np.dtype(vectorizer.dtype)}: it rounds distances "
            "before the forest's float32 cast"
        )
    return vectorizer, regressor


def _regressor_types() -> tuple[type, ...]:
    # Not the extremely randomized trees: their one-hot thresholds are anywhere in (0, 1).
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.tree import DecisionTreeRegressor

    return RandomForestRegressor, DecisionTreeRegressor
