"""The forest's array helpers (`forest.arrays`): float32 neighbours as scikit-learn casts."""

from __future__ import annotations

import numpy as np
import pytest

from ride_duration.forest.arrays import (
    FLOAT32_MAX,
    check_array,
    distinct,
    next_down32,
    next_up32,
    round_down32,
)

ONE_UP = 1.0 + 2.0**-23  # the float32 after 1.0


@pytest.mark.parametrize(
    ("x", "down"),
    [
        (1.0, 1.0),
        (1.0 + 2.0**-30, 1.0),  # no float32 between: rounds down, not to nearest
        (ONE_UP - 2.0**-30, 1.0),  # the cast would round up to ONE_UP
        (-1.0 - 2.0**-30, -ONE_UP),
        (1e39, FLOAT32_MAX),
    ],
)
def test_round_down32_is_the_largest_float32_at_or_below(x, down):
    assert round_down32(np.array([x])).tolist() == [down]


def test_the_float32_neighbours():
    assert next_up32(np.array([1.0])).tolist() == [ONE_UP]
    assert next_down32(np.array([ONE_UP])).tolist() == [1.0]
    assert next_up32(np.array([FLOAT32_MAX])).tolist() == [np.inf]
    assert next_down32(np.array([-FLOAT32_MAX])).tolist() == [-np.inf]


@pytest.mark.parametrize(
    ("array", "length", "ndim", "says"),
    [
        ([1, 2], None, 1, "must be a 1-d int64 array"),
        (np.array([1, 2], dtype=np.int32), None, 1, "must be a 1-d int64 array"),
        (np.zeros((2, 2), dtype=np.int64), None, 1, "must be a 1-d int64 array"),
        (np.zeros(3, dtype=np.int64), 2, 1, "has 3 entries, not 2"),
    ],
)
def test_check_array_refuses_what_the_evaluator_cannot_index(array, length, ndim, says):
    with pytest.raises(ValueError, match=says):
        check_array("roots", array, np.int64, length, ndim)
    check_array("roots", np.zeros(2, dtype=np.int64), np.int64, 2)


@pytest.mark.parametrize(
    "values",
    [
        np.array([], dtype=np.int64),
        np.array([7], dtype=np.int64),
        np.array([3, 1, 3, 2, 1], dtype=np.int64),
        np.array([2**62, -(2**62), 0, 2**62], dtype=np.int64),
        np.array([0.5, -0.0, 0.0, 1e-300, 0.5, 3.75]),
        np.array([5, 5, 5], dtype=np.int32),
    ],
    ids=["empty", "one", "repeats", "extremes", "floats-with-signed-zero", "all-equal"],
)
def test_distinct_is_np_unique(values):
    got = distinct(values)
    expected = np.unique(values)
    assert got.dtype == expected.dtype
    assert got.tobytes() == expected.tobytes()
