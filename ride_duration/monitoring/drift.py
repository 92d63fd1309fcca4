"""Drift: how far a month's profile is from its model's reference, column by column.

Two figures per column, from the two histograms' shares of trips per bin:

- the population stability index, PSI = sum over bins of (month - reference) * ln(month /
  reference), the credit-scoring figure most model monitors report (Evidently, NannyML): 0
  for no change, under 0.1 usually read as none, above 0.25 as a shift. A bin empty on one
  side would make it infinite, so a share of 0 counts as 0.0001, as Evidently does;
- the Jensen-Shannon distance, the square root of the Jensen-Shannon divergence with base-2
  logarithms (scipy's `jensenshannon(p, q, base=2)`): symmetric, bounded by 0 and 1, and
  defined with empty bins, so it needs no floor and stays comparable across columns.

PSI is the figure with conventional thresholds, and it grows fast with a few heavy bins; the
JS distance is the bounded one, robust to the zone histograms' many empty bins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ride_duration.monitoring.profile import COLUMNS, Histogram, Profile

EMPTY_SHARE = 0.0001  # what an empty bin's share counts as in PSI (Evidently's choice)
FIGURES = ("psi", "js_distance")


def shares(counts: np.ndarray) -> np.ndarray:
    """Counts as shares of their total."""
    found: np.ndarray = counts / counts.sum()
    return found


def psi(reference: np.ndarray, month: np.ndarray) -> float:
    """The population stability index of a month's counts against the reference's."""
    expected = np.where(reference == 0, EMPTY_SHARE, shares(reference))
    actual = np.where(month == 0, EMPTY_SHARE, shares(month))
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def js_distance(reference: np.ndarray, month: np.ndarray) -> float:
    """The Jensen-Shannon distance (base 2) between the month's and the reference's shares."""
    p, q = shares(reference), shares(month)
    m = (p + q) / 2
    divergence = (_kl(p, m) + _kl(q, m)) / 2
    return math.sqrt(max(divergence, 0.0))


def _kl(p: np.ndarray, m: np.ndarray) -> float:
    present = p > 0
    return float(np.sum(p[present] * np.log2(p[present] / m[present])))


@dataclass(frozen=True)
class ColumnDrift:
    """One column's drift figures (None: the month scored no trip)."""

    column: str
    psi: float | None
    js_distance: float | None

    def figure(self, name: str) -> float | None:
        value: float | None = getattr(self, name)
        return value


def compare(reference: Profile, month: Profile) -> list[ColumnDrift]:
    """Each column's drift from the reference, in `COLUMNS` order."""
    found = []
    for column in COLUMNS:
        before = reference.histograms.get(column)
        after = month.histograms.get(column)
        if before is None or after is None:
            continue
        found.append(_column_drift(column, before, after))
    return found


def _column_drift(column: str, before: Histogram, after: Histogram) -> ColumnDrift:
    if not before.total or not after.total:
        return ColumnDrift(column, None, None)
    return ColumnDrift(
        column, psi(before.counts, after.counts), js_distance(before.counts, after.counts)
    )
