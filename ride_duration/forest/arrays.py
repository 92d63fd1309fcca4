"""Array helpers of the forest: float32 rounding as scikit-learn casts X, and array checks."""

from __future__ import annotations

from typing import Any

import numpy as np

FLOAT32_MAX = float(np.finfo(np.float32).max)


def round_down32(x: np.ndarray) -> np.ndarray:
    """The largest float32 <= each x, as float64."""
    with np.errstate(over="ignore"):
        nearest = x.astype(np.float32)
    above = nearest.astype(np.float64) > x
    nearest[above] = np.nextafter(nearest[above], np.float32(-np.inf))
    return nearest.astype(np.float64)


def next_up32(x: np.ndarray) -> np.ndarray:
    """The smallest float32 > each x (x a float32 value held as float64; inf past the max)."""
    with np.errstate(over="ignore"):
        return np.nextafter(x.astype(np.float32), np.float32(np.inf)).astype(np.float64)


def next_down32(x: np.ndarray) -> np.ndarray:
    """The largest float32 < each x (x a float32 value held as float64; -inf past the min)."""
    with np.errstate(over="ignore"):
        return np.nextafter(x.astype(np.float32), np.float32(-np.inf)).astype(np.float64)


def distinct(values: np.ndarray) -> np.ndarray:
    """The sorted distinct values of a 1-d array of integers or finite floats: np.unique's
    answer, without the import of numpy.ma that np.unique's first call costs (~10 ms of a
    cold start)."""
    ordered = np.sort(values)
    if len(ordered) < 2:
        return ordered
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]


def check_array(
    name: str, array: Any, dtype: type, length: int | None = None, ndim: int = 1
) -> None:
    """ValueError unless `array` is an `ndim`-d numpy array of `dtype` (with `length` rows)."""
    if not isinstance(array, np.ndarray) or array.dtype != dtype or array.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-d {np.dtype(dtype)} array")
    if length is not None and len(array) != length:
        raise ValueError(f"{name} has {len(array)} entries, not {length}")
