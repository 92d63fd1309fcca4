"""The lookup table: scikit-learn's prediction for each (pair class, distance interval)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ride_duration.forest.arrays import check_array


@dataclass(frozen=True, eq=False)
class LookupTable:
    """The forest as a step function of a ride's pair class and distance interval.

    Class k + 1 is the pair column `pair_columns[k]` (sorted: the pair columns some split
    tests); class 0 is every other ride: known pairs that no split tests, and unseen pairs, all
    zeros to every tree. A ride's interval is the number of `cuts` (the sorted distinct
    distance thresholds) strictly below float32(distance). `values[class, interval]` is
    scikit-learn's own prediction there.
    """

    pair_columns: np.ndarray
    cuts: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        check_array("table pair_columns", self.pair_columns, np.int64)
        check_array("table cuts", self.cuts, np.float64)
        shape = (len(self.pair_columns) + 1, len(self.cuts) + 1)
        check_array("table values", self.values, np.float64, ndim=2)
        if self.values.shape != shape:
            raise ValueError(f"table values have shape {self.values.shape}, not {shape}")
        if np.any(np.diff(self.pair_columns) <= 0) or np.any(np.diff(self.cuts) <= 0):
            raise ValueError("table pair_columns or cuts are not sorted and distinct")
        if not np.isfinite(self.cuts).all() or not np.isfinite(self.values).all():
            raise ValueError("table cuts or values are not finite")
