"""Drift figures: PSI and Jensen-Shannon distance, against reference implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from ride_duration.monitoring import drift
from ride_duration.monitoring.drift import ColumnDrift
from ride_duration.monitoring.profile import Histogram, Profile


def textbook_psi(reference: list[int], month: list[int]) -> float:
    """PSI as Evidently computes it (`psi_stat_test`): shares, an empty one counted as 0.0001,
    then sum((month - reference) * ln(month / reference)); written out loop by loop."""
    total_r, total_m = sum(reference), sum(month)
    found = 0.0
    for r, m in zip(reference, month, strict=True):
        expected = r / total_r or 0.0001
        actual = m / total_m or 0.0001
        found += (actual - expected) * math.log(actual / expected)
    return found


COUNTS = [
    ([10, 20, 30, 40], [10, 20, 30, 40]),
    ([10, 20, 30, 40], [40, 30, 20, 10]),
    ([1, 0, 0, 99], [0, 50, 50, 0]),  # disjoint: JS distance 1
    ([1_000_000, 1], [1, 1_000_000]),
    ([5, 5], [6, 4]),
    ([0, 0, 7, 0, 3], [1, 1, 1, 1, 1]),
    (list(range(1, 268)), list(range(267, 0, -1))),  # a zone histogram's length
]


@pytest.mark.parametrize(("reference", "month"), COUNTS)
def test_psi_is_the_textbook_figure(reference, month):
    found = drift.psi(np.array(reference), np.array(month))
    assert found == pytest.approx(textbook_psi(reference, month), abs=1e-6)
    assert found >= 0


@pytest.mark.parametrize(("reference", "month"), COUNTS)
def test_js_distance_is_scipys_with_base_2(reference, month):
    found = drift.js_distance(np.array(reference), np.array(month))
    assert found == pytest.approx(jensenshannon(reference, month, base=2), abs=1e-6)
    assert 0 <= found <= 1 + 1e-12
    assert found == pytest.approx(drift.js_distance(np.array(month), np.array(reference)))


def test_identical_shares_have_no_drift_and_disjoint_ones_the_largest_js_distance():
    assert drift.psi(np.array([1, 2, 3]), np.array([10, 20, 30])) == 0
    assert drift.js_distance(np.array([1, 2, 3]), np.array([10, 20, 30])) == 0
    assert drift.js_distance(np.array([5, 0]), np.array([0, 5])) == pytest.approx(1.0)


def histogram(counts: list[int], numeric: bool = True) -> Histogram:
    edges = np.arange(len(counts) - 1, dtype=np.float64) if numeric else None
    return Histogram(np.array(counts, dtype=np.int64), edges)


@pytest.mark.parametrize(
    ("reference", "month", "expected"),
    [
        # A column either side lacks is not compared.
        ({"trip_distance": [1, 1]}, {"actual_duration": [1, 1]}, []),
        # A month that scored no trip has no figures.
        ({"trip_distance": [1, 1]}, {"trip_distance": [0, 0]}, [("trip_distance", None)]),
        ({"trip_distance": [0, 0]}, {"trip_distance": [3, 1]}, [("trip_distance", None)]),
        # Shown in the order of COLUMNS, whatever the profiles' order.
        (
            {"actual_duration": [1, 1], "trip_distance": [1, 1]},
            {"actual_duration": [1, 1], "trip_distance": [1, 1]},
            [("trip_distance", 0.0), ("actual_duration", 0.0)],
        ),
    ],
)
def test_compare_covers_the_columns_both_profiles_have(reference, month, expected):
    before = Profile({name: histogram(counts) for name, counts in reference.items()})
    after = Profile({name: histogram(counts) for name, counts in month.items()})
    found = drift.compare(before, after)
    assert [(f.column, f.psi) for f in found] == expected
    assert all(isinstance(f, ColumnDrift) for f in found)
