"""Pickup-dropoff pairs as int64 keys, and the DictVectorizer's pair columns they map to."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from numbers import Real
from typing import Any

import numpy as np

from ride_duration.forest.arrays import check_array, distinct

# The names of ride_duration.data.features and .layouts, repeated here because those modules
# import pyarrow, which prediction must not need (tests check that they agree).
PU_DO = "PU_DO"
DISTANCE = "trip_distance"
UNKNOWN_LOCATION = -1
# A pair is one int64 key of two 32-bit fields holding id + 1 (so the unknown location -1
# fits): ids must lie in [-1, MAX_ID).
MAX_ID = 2**31 - 1


INT32_MAX = int(np.iinfo(np.int32).max)


def pair_key(pickup: np.ndarray, dropoff: np.ndarray) -> np.ndarray:
    """The int64 key of each (pickup, dropoff) pair; ids must lie in [-1, MAX_ID)."""
    return ((np.asarray(pickup, np.int64) + 1) << 32) | (np.asarray(dropoff, np.int64) + 1)


@dataclass(frozen=True, eq=False)
class PairVocabulary:
    """How the model's DictVectorizer encodes a ride: one one-hot column per known pair.

    `pair_keys` are the known pairs as sorted `pair_key`s and `pair_columns` their columns;
    `distance_column` is the column of trip_distance (None when the model does not use it);
    `n_columns` is the vectorizer's width.
    """

    pair_keys: np.ndarray
    pair_columns: np.ndarray
    distance_column: int | None
    n_columns: int

    def __post_init__(self) -> None:
        if not 0 <= self.n_columns <= INT32_MAX:
            raise ValueError(f"n_columns is {self.n_columns}, not in [0, 2**31)")
        check_array("pair_keys", self.pair_keys, np.int64)
        check_array("pair_columns", self.pair_columns, np.int64, len(self.pair_keys))
        if np.any(np.diff(self.pair_keys) <= 0):
            raise ValueError("pair_keys are not sorted and distinct")
        pickup, dropoff = key_ids(self.pair_keys)
        if not valid_ids(pickup).all() or not valid_ids(dropoff).all():
            raise ValueError("pair_keys hold ids outside [-1, 2**31 - 1)")
        columns = self.pair_columns
        if len(columns) and (columns.min() < 0 or columns.max() >= self.n_columns):
            raise ValueError(f"pair_columns outside [0, {self.n_columns})")
        if len(distinct(columns)) != len(columns):
            raise ValueError("two pairs share a column")
        column = self.distance_column
        if column is not None and (not 0 <= column < self.n_columns or column in columns):
            raise ValueError(f"distance_column {column} is not a free column")

    @classmethod
    def from_dict_vectorizer(cls, vectorizer: Any) -> PairVocabulary:
        """The pairs and distance column of a fitted DictVectorizer.

        Keys our features never produce (another feature, a pair not written as
        "<int>_<int>", ids outside [-1, 2**31 - 1)) are ignored: no ride gets their column.
        """
        vocabulary: dict[str, int] = vectorizer.vocabulary_
        prefix = f"{PU_DO}{vectorizer.separator}"
        keys, columns = [], []
        for name, column in vocabulary.items():
            ids = parse_pair(name.removeprefix(prefix)) if name.startswith(prefix) else None
            if ids is not None:
                keys.append((ids[0] + 1) << 32 | (ids[1] + 1))
                columns.append(int(column))
        order = np.argsort(np.asarray(keys, dtype=np.int64), kind="stable")
        distance_column = vocabulary.get(DISTANCE)
        return cls(
            pair_keys=np.asarray(keys, dtype=np.int64)[order],
            pair_columns=np.asarray(columns, dtype=np.int64)[order],
            distance_column=None if distance_column is None else int(distance_column),
            n_columns=len(vectorizer.feature_names_),
        )

    @property
    def features(self) -> tuple[str, ...]:
        """The features the model reads: PU_DO when it knows pairs, trip_distance when it has
        its column."""
        return tuple(
            feature
            for feature, used in (
                (PU_DO, len(self.pair_keys) > 0),
                (DISTANCE, self.distance_column is not None),
            )
            if used
        )

    def checked_columns(self, pair_column: np.ndarray) -> np.ndarray:
        """`pair_column` as int64 (`encode`'s answer: a pair column, or -1 for an unseen pair),
        or TypeError / ValueError when it holds anything else."""
        pairs = np.asarray(pair_column)
        if pairs.ndim != 1 or pairs.dtype.kind not in "iu":
            raise TypeError(f"pair_column must be a 1-d integer array, got {pairs.dtype}")
        pairs = pairs.astype(np.int64, copy=False)
        if len(pairs) and (pairs.min() < -1 or pairs.max() >= self.n_columns):
            raise ValueError(f"pair_column outside [-1, {self.n_columns})")
        if not self._is_pair[pairs + 1].all():
            raise ValueError("pair_column holds a column that is not a pair's")
        return pairs

    @cached_property
    def _is_pair(self) -> np.ndarray:
        """Indexed by column + 1: whether a ride can hold it (-1, an unseen pair, can)."""
        is_pair = np.zeros(self.n_columns + 1, dtype=bool)
        is_pair[0] = True
        is_pair[self.pair_columns + 1] = True
        return is_pair

    def encode(self, pickup: np.ndarray, dropoff: np.ndarray) -> np.ndarray:
        """Each ride's one-hot column (int64) for its (pickup, dropoff) pair, -1 when unseen.

        Ids are integers, -1 for an unknown location; an id outside [-1, 2**31 - 1) is never
        part of a known pair.
        """
        pickup_ids, pickup_ok = location_ids(pickup, "pickup")
        dropoff_ids, dropoff_ok = location_ids(dropoff, "dropoff")
        if pickup_ids.shape != dropoff_ids.shape:
            raise ValueError(f"{len(pickup_ids)} pickups but {len(dropoff_ids)} dropoffs")
        if not len(self.pair_keys):
            return np.full(len(pickup_ids), -1, dtype=np.int64)
        keys = pair_key(pickup_ids, dropoff_ids)
        position = np.minimum(np.searchsorted(self.pair_keys, keys), len(self.pair_keys) - 1)
        known = pickup_ok & dropoff_ok & (self.pair_keys[position] == keys)
        return np.where(known, self.pair_columns[position], -1)

    def decode(self, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The pickup and dropoff ids of each pair column (the inverse of `encode`)."""
        columns = np.asarray(columns, dtype=np.int64)
        if not len(columns):
            return key_ids(np.empty(0, dtype=np.int64))
        order = np.argsort(self.pair_columns)
        position = np.searchsorted(self.pair_columns[order], columns)
        position = np.minimum(position, max(len(order) - 1, 0))
        if not len(order) or np.any(self.pair_columns[order][position] != columns):
            raise ValueError("some columns are not pair columns of this vocabulary")
        return key_ids(self.pair_keys[order[position]])

    def describe(self, column: int) -> str:
        """A pair column as a reader knows it: "PU_DO=43_151 (column 17)", or "an unseen pair"."""
        if column < 0:
            return "an unseen pair"
        pickup, dropoff = self.decode(np.array([column]))
        return f"{PU_DO}={pickup[0]}_{dropoff[0]} (column {column})"


def encode_records(
    vocabulary: PairVocabulary, records: Sequence[Mapping[str, Any]]
) -> tuple[np.ndarray, np.ndarray | None]:
    """The pair columns and distances of feature dicts, as the DictVectorizer reads them.

    A missing key is 0 to the vectorizer, so a ride without PU_DO has no pair column and one
    without trip_distance has distance 0; None is NaN. A PU_DO not written "<int>_<int>" and
    a distance that is not a number raise ValueError (the product never makes them).
    """
    pickup = np.full(len(records), MAX_ID, dtype=np.int64)  # MAX_ID: no pair
    dropoff = pickup.copy()
    distance = np.zeros(len(records), dtype=np.float64)
    for i, record in enumerate(records):
        if PU_DO in record:
            ids = parse_pair(record[PU_DO]) if isinstance(record[PU_DO], str) else None
            if ids is None:
                raise ValueError(f"row {i}: {PU_DO} is {record[PU_DO]!r}, not '<int>_<int>'")
            pickup[i], dropoff[i] = ids
        value = record.get(DISTANCE, 0.0)
        if value is not None and (isinstance(value, bool) or not isinstance(value, Real)):
            raise ValueError(f"row {i}: {DISTANCE} is {value!r}, not a number")
        distance[i] = np.nan if value is None else float(value)
    pairs = vocabulary.encode(pickup, dropoff)
    return pairs, (None if vocabulary.distance_column is None else distance)


def parse_pair(text: str) -> tuple[int, int] | None:
    """(pickup, dropoff) of "<pickup>_<dropoff>" exactly as the features write it, else None."""
    pickup, separator, dropoff = text.partition("_")
    try:
        ids = int(pickup), int(dropoff)
    except ValueError:
        return None
    # int() also reads "+5", " 5" and "1_0": only the features' own spelling names a pair.
    if not separator or f"{ids[0]}_{ids[1]}" != text or not all(valid_ids(np.array(ids))):
        return None
    return ids


def valid_ids(ids: np.ndarray) -> np.ndarray:
    return (ids >= UNKNOWN_LOCATION) & (ids < MAX_ID)


def key_ids(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (keys >> 32) - 1, (keys & 0xFFFFFFFF) - 1


def location_ids(values: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Ids as int64 (0 where invalid) and which are valid, without wrapping huge unsigned ids."""
    ids = np.asarray(values)
    if ids.ndim != 1 or ids.dtype.kind not in "iu":
        raise TypeError(f"{name} ids must be a 1-d integer array, got {ids.dtype}")
    valid = ids < MAX_ID if ids.dtype.kind == "u" else valid_ids(ids)
    return np.where(valid, ids, 0).astype(np.int64), valid


def checked_distances(distance: np.ndarray | None, n: int, *, as_float32: bool) -> np.ndarray:
    """Each ride's distance as float64, refused as scikit-learn refuses X: one per ride, none
    NaN or infinite (after the cast to float32 a forest applies, with `as_float32`)."""
    if distance is None:
        raise ValueError(f"the model uses {DISTANCE}: give a distance for every ride")
    values = np.asarray(distance, dtype=np.float64)
    if values.shape != (n,):
        raise ValueError(f"{n} pair columns but distances of shape {values.shape}")
    x = values
    if as_float32:
        with np.errstate(over="ignore", invalid="ignore"):
            x = values.astype(np.float32).astype(np.float64)  # the cast scikit-learn applies
    bad = ~np.isfinite(x)
    if bad.any():
        row = int(np.argmax(bad))
        what = "NaN, infinite or too large for float32" if as_float32 else "NaN or infinite"
        raise ValueError(
            f"{int(bad.sum())} distance(s) are {what}, which scikit-learn refuses "
            f"(row {row}: {float(values[row])!r})"
        )
    return x
