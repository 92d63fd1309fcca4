"""Predicting each distinct feature row once, with a cache across a month's batches.

A month repeats most of its (pair, distance) rows: each is predicted once.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


class PredictionCache:
    """Predicts each distinct feature row (PU_DO column, distance) of a month once.

    A trip's prediction depends only on its feature row, and a model gives the same row the same
    prediction wherever it appears. Within a batch each distinct row is predicted once; across
    batches, rows seen before are looked up, for as long as that finds any (real TLC months
    repeat 20 to 40% of their rows) and up to `limit` rows, so memory stays bounded. A month
    whose rows do not repeat turns the lookup off after its second batch. One cache serves one
    month in one thread.
    """

    def __init__(self, limit: int = 1_000_000, min_hit_share: float = 0.05) -> None:
        import pandas as pd

        self.limit = limit
        self.min_hit_share = min_hit_share
        self.enabled = True
        self.batches = 0
        self.distances = pd.Index(np.empty(0, dtype=np.int64))  # float64 bits of distances seen
        self.keys = pd.Index(np.empty(0, dtype=np.int64))
        self.values = np.empty(0, dtype=np.float64)

    def predictions(
        self,
        pair_column: np.ndarray,
        distance: np.ndarray | None,
        predict: Callable[[np.ndarray, np.ndarray | None], np.ndarray],
    ) -> np.ndarray:
        """Predictions for every row, calling `predict` only for rows not seen before."""
        if not self.enabled:
            return predict_distinct(pair_column, distance, predict)
        return predict_distinct(pair_column, distance, predict, lookup=self._lookup_or_predict)

    def _lookup_or_predict(
        self,
        pairs: np.ndarray,
        bits: np.ndarray,
        distances: np.ndarray | None,
        predict: Callable[[np.ndarray, np.ndarray | None], np.ndarray],
    ) -> np.ndarray:
        import pandas as pd

        distance_code = self.distances.get_indexer(bits)
        unseen = distance_code < 0
        if unseen.any():
            self.distances = self.distances.append(pd.Index(pd.unique(bits[unseen])))
            distance_code[unseen] = self.distances.get_indexer(bits[unseen])
        keys = ((pairs + 1) << 32) | distance_code
        position = self.keys.get_indexer(keys)
        cached = position >= 0
        values = np.empty(len(keys), dtype=np.float64)
        values[cached] = self.values[position[cached]]
        new = ~cached
        if new.any():
            values[new] = predict(pairs[new], None if distances is None else distances[new])
        self.batches += 1
        if self.batches > 1 and cached.mean() < self.min_hit_share:
            # Rows do not repeat across batches here: stop paying for the lookup.
            self.enabled = False
            self.distances = self.keys = pd.Index(np.empty(0, dtype=np.int64))
            self.values = np.empty(0, dtype=np.float64)
            return values
        room = self.limit - len(self.keys)
        if new.any() and room > 0:
            self.keys = self.keys.append(pd.Index(keys[new][:room]))
            self.values = np.concatenate([self.values, values[new][:room]])
        return values


def predict_distinct(
    pair_column: np.ndarray,
    distance: np.ndarray | None,
    predict: Rows,
    lookup: Callable[[np.ndarray, np.ndarray, np.ndarray | None, Rows], np.ndarray] | None = None,
) -> np.ndarray:
    """Predictions for every row, calling `predict` once per distinct (pair column, distance).

    `lookup(pairs, distance_bits, distances, predict)`, when given, answers the distinct rows
    instead (a cache that knows some of them).
    """
    n = len(pair_column)
    if n == 0:
        return np.empty(0, dtype=np.float64)
    if n == 1 and lookup is None:
        return predict(pair_column, distance)
    import pandas as pd

    bits = np.zeros(n, dtype=np.int64) if distance is None else distance.view(np.int64)
    # Distinct rows, by an exact int64 key: pair column and a code of the distance's bits.
    local_code, _ = pd.factorize(bits)
    codes, distinct = pd.factorize(((pair_column + 1) << 32) | local_code)
    first = np.empty(len(distinct), dtype=np.int64)
    first[codes[::-1]] = np.arange(n - 1, -1, -1)  # the first row of each distinct key
    pairs = pair_column[first]
    distances = None if distance is None else distance[first]
    if lookup is None:
        answered = predict(pairs, distances)
    else:
        answered = lookup(pairs, bits[first], distances, predict)
    predictions: np.ndarray = answered[codes]  # each row gets its distinct key's
    return predictions


Rows = Callable[[np.ndarray, np.ndarray | None], np.ndarray]
