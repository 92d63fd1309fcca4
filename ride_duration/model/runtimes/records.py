"""The generic runtime: any model with `predict(list_of_feature_dicts)`, one dict per trip.

Whatever no other runtime serves: a scikit-learn estimator of another shape, or an MLflow
pyfunc model. It needs pyarrow and the model's own library, so the full install alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ride_duration.data.rules import CheckedRides
from ride_duration.model.distinct import PredictionCache
from ride_duration.model.runtimes.base import BatchPredictions

if TYPE_CHECKING:
    import pyarrow as pa


class RecordsPredictor:
    """The generic path: any model with `predict(list_of_feature_dicts)`."""

    path = "generic (one feature dict per trip)"

    @classmethod
    def for_model(
        cls, model: Any, available: tuple[str, ...] | None = None
    ) -> RecordsPredictor | None:
        """This runtime serves any model, with the `available` features (None: all)."""
        return cls(model, available)

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
