"""The compiled runtime: a model's compiled form (`ride_duration.forest`), numpy alone.

A forest or a linear model compiled by `model.compiling` is evaluated bit for bit as
scikit-learn's n_jobs=1 answers, in the serving install too, which has no scikit-learn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ride_duration.data.rules import CheckedRides
from ride_duration.forest.npz import CompiledModel, kind_of
from ride_duration.model.distinct import PredictionCache
from ride_duration.model.runtimes.base import BatchPredictions, encode, encode_trips, unknown_pairs

if TYPE_CHECKING:
    import pyarrow as pa


class CompiledPredictor:
    """A compiled form (`ride_duration.forest.npz.KINDS`): numpy only, scikit-learn's exact
    answers (a forest's with n_jobs=1).

    Each trip's pair is encoded by the model's own vocabulary and its distance passed as
    scikit-learn reads it; a whole month takes milliseconds.
    """

    @classmethod
    def for_model(
        cls, model: Any, available: tuple[str, ...] | None = None
    ) -> CompiledPredictor | None:
        """This runtime for a compiled kind; None for any other model."""
        return cls(model) if kind_of(model) is not None else None

    def __init__(self, compiled: CompiledModel) -> None:
        kind = kind_of(compiled)
        if kind is None:
            raise TypeError(f"a {type(compiled).__name__} is no compiled kind")
        self.compiled = compiled
        self.features = compiled.features
        self.path = kind.noun  # "compiled forest", "compiled linear model"

    def encode(self, trips: pa.Table) -> tuple[np.ndarray, np.ndarray | None]:
        """Each trip's pair column (-1: unknown) and its distance."""
        return encode_trips(self.compiled.vocabulary, self.features, trips)

    def predict(self, trips: pa.Table) -> np.ndarray:
        """The compiled model's predictions, one per trip."""
        return self.compiled.predict(*self.encode(trips))

    def predict_checked(self, rides: CheckedRides) -> np.ndarray:
        """The compiled model's predictions of checked rides, with numpy alone."""
        vocabulary, features = self.compiled.vocabulary, self.features
        return self.compiled.predict(
            *encode(vocabulary, features, rides.pickup, rides.dropoff, rides.distance)
        )

    def predict_batch(
        self, trips: pa.Table, cache: PredictionCache | None = None
    ) -> BatchPredictions:
        """As `predict`, with the count of unseen pairs; a compiled model needs no cache."""
        pair_column, distance = self.encode(trips)
        predictions = self.compiled.predict(pair_column, distance)
        return BatchPredictions(predictions, unknown_pairs(pair_column, self.features))
