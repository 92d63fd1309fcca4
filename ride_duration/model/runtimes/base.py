"""What every runtime is: the `Predictor` interface, its batch answer, and the rides' encoding.

A runtime predicts ride durations (minutes) of trip tables (batch), of a month's batches with
its cache, and of checked rides (online); it says how it predicts (`path`) and which features
it reads. The compiled kinds and the DictVectorizer pipelines share the encoding of a ride's
pickup/dropoff pair into their vocabulary's column.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, Self

import numpy as np

from ride_duration.data.rules import DISTANCE, DROPOFF_LOCATION, PICKUP_LOCATION, CheckedRides
from ride_duration.forest.vocabulary import PU_DO, PairVocabulary
from ride_duration.model.distinct import PredictionCache

if TYPE_CHECKING:
    import pyarrow as pa

# pyarrow is imported where used: the serving install, which predicts checked rides with a
# compiled form, has none.


@dataclass(frozen=True)
class BatchPredictions:
    """The predictions of a batch of trips, and how many had a pair the model never saw."""

    values: np.ndarray
    unknown_pairs: int | None  # None: the model's features say nothing about pairs


class Predictor(Protocol):
    """Predicts ride durations (minutes) for prepared trips and checked rides."""

    features: tuple[str, ...]
    path: str  # how it predicts, for logs and manifests

    @classmethod
    def for_model(cls, model: Any, available: tuple[str, ...] | None) -> Self | None:
        """This runtime for `model` (with the `available` features; None: all of them), or
        None when it does not serve such a model."""
        ...

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


def encode(
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


def encode_trips(
    vocabulary: PairVocabulary, features: tuple[str, ...], trips: pa.Table
) -> tuple[np.ndarray, np.ndarray | None]:
    """`encode` of a table of trips (a trip without a distance column has no distance)."""
    from ride_duration.data.features import location_ids

    distance = None
    if DISTANCE in features:
        distance = np.asarray(trips[DISTANCE].to_numpy(), dtype=np.float64)
    return encode(
        vocabulary,
        features,
        location_ids(trips[PICKUP_LOCATION]),
        location_ids(trips[DROPOFF_LOCATION]),
        distance,
    )


def unknown_pairs(pair_column: np.ndarray, features: tuple[str, ...]) -> int | None:
    """How many trips have a pair the model never saw: a quality metric of the month."""
    return int((pair_column < 0).sum()) if PU_DO in features else None
