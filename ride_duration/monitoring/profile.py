"""A profile: fixed-bin histograms of what a model sees and says, for one month of trips.

A model's reference profile is taken at training time, over the trips it was fitted on and its
own predictions of them, and stored beside it as `profile.npz` (plain arrays: no pickle). A
scored month's profile is accumulated batch by batch with the reference's bins, in constant
memory; `ride_duration.monitoring.drift` compares the two. The columns:

- the numeric ones (distance, predicted and actual duration) in 20 bins of equal frequency in
  the reference (its quantiles), the outer two open-ended, so every value falls in one;
- the pickup and dropoff zones in one bin per TLC zone id (0 to 265), and a last bin for a
  zone that is unknown (missing in the file) or no TLC zone.

Counts are integers, so a month's profile is the same whatever its batches were.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ride_duration.data.rules import DISTANCE, DROPOFF_LOCATION, PICKUP_LOCATION

PROFILE_FILE = "profile.npz"
PROFILE_VERSION = 1
PREDICTED_DURATION = "predicted_duration"
ACTUAL_DURATION = "actual_duration"
NUMERIC_COLUMNS = (DISTANCE, PREDICTED_DURATION, ACTUAL_DURATION)
ZONE_COLUMNS = (PICKUP_LOCATION, DROPOFF_LOCATION)
COLUMNS = NUMERIC_COLUMNS + ZONE_COLUMNS  # in the order figures and reports show them
QUANTILE_BINS = 20
LAST_ZONE = 265  # TLC's zone ids run from 1 to 265 (264, 265: unknown, outside NYC)
UNKNOWN_ZONE_BIN = LAST_ZONE + 1


class ProfileError(ValueError):
    """A profile file that is not one this version reads."""


@dataclass(frozen=True)
class Histogram:
    """One column's counts; `edges` are a numeric column's inner bin edges (None: zones)."""

    counts: np.ndarray
    edges: np.ndarray | None = None

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    @property
    def unknown_share(self) -> float | None:
        """The share of trips whose zone is unknown (None: a numeric column, or no trips)."""
        if self.edges is not None or not self.total:
            return None
        return float(self.counts[UNKNOWN_ZONE_BIN]) / self.total


def quantile_edges(values: np.ndarray, bins: int = QUANTILE_BINS) -> np.ndarray:
    """The inner edges of `bins` bins of equal frequency over `values` (fewer when values
    repeat: edges are distinct)."""
    if not len(values):
        return np.empty(0, dtype=np.float64)
    inner = np.quantile(np.asarray(values, dtype=np.float64), np.linspace(0, 1, bins + 1)[1:-1])
    return np.unique(inner)


def numeric_counts(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Counts of `values` in the bins `edges` bound: bin i holds edges[i-1] <= v < edges[i],
    the first from minus infinity, the last up to plus infinity (numpy.histogram's rule, and
    its code: it sorts each block of values and searches the edges in it, five times faster
    than searching each value among the edges)."""
    counts, _ = np.histogram(values, np.concatenate(([-np.inf], edges, [np.inf])))
    return counts.astype(np.int64, copy=False)


def zone_counts(ids: np.ndarray) -> np.ndarray:
    """Counts of zone ids (int64, negative: unknown), one bin per id and one for the unknown."""
    known = (ids >= 0) & (ids <= LAST_ZONE)
    bins = np.where(known, ids, UNKNOWN_ZONE_BIN)
    return np.bincount(bins, minlength=UNKNOWN_ZONE_BIN + 1).astype(np.int64, copy=False)


@dataclass
class Profile:
    """Histograms of a month's (or a model's training) trips, and its rows read and dropped."""

    histograms: dict[str, Histogram] = field(default_factory=dict)
    rows_read: int = 0
    rows_dropped: int = 0

    @classmethod
    def reference(
        cls, columns: Mapping[str, np.ndarray], rows_read: int, rows_dropped: int
    ) -> Profile:
        """The profile of training trips: numeric bins from their own quantiles."""
        edges = {
            name: quantile_edges(values)
            for name, values in columns.items()
            if name in NUMERIC_COLUMNS
        }
        profile = cls.empty_like(edges, [name for name in columns if name in ZONE_COLUMNS])
        profile.add(columns, rows_read, rows_dropped)
        return profile

    @classmethod
    def empty_like(cls, edges: Mapping[str, np.ndarray], zones: list[str]) -> Profile:
        """A profile with no trips yet, with these numeric bins and zone columns."""
        histograms = {
            name: Histogram(np.zeros(len(edges[name]) + 1, dtype=np.int64), edges[name])
            for name in NUMERIC_COLUMNS
            if name in edges
        }
        histograms.update(
            (name, Histogram(np.zeros(UNKNOWN_ZONE_BIN + 1, dtype=np.int64)))
            for name in ZONE_COLUMNS
            if name in zones
        )
        return cls(histograms)

    def same_bins(self) -> Profile:
        """An empty profile with this one's columns and bins, to accumulate a month into."""
        edges = {n: h.edges for n, h in self.histograms.items() if h.edges is not None}
        zones = [n for n, h in self.histograms.items() if h.edges is None]
        return Profile.empty_like(edges, zones)

    def add(self, columns: Mapping[str, np.ndarray], rows_read: int, rows_dropped: int) -> None:
        """Count one batch: its columns' values (those this profile has), its rows."""
        self.rows_read += rows_read
        self.rows_dropped += rows_dropped
        for name, histogram in self.histograms.items():
            values = columns.get(name)
            if values is None or not len(values):
                continue
            if histogram.edges is None:
                histogram.counts[:] += zone_counts(values)
            else:
                histogram.counts[:] += numeric_counts(histogram.edges, values)

    @property
    def dropped_share(self) -> float | None:
        """The share of rows read that were not scored (None: no rows)."""
        return self.rows_dropped / self.rows_read if self.rows_read else None

    def to_bytes(self) -> bytes:
        """The profile as an `.npz` file's bytes: named arrays, no pickle."""
        arrays: dict[str, np.ndarray] = {
            "profile_version": np.array(PROFILE_VERSION),
            "rows": np.array([self.rows_read, self.rows_dropped], dtype=np.int64),
            "columns": np.array(list(self.histograms), dtype=np.str_),
        }
        for name, histogram in self.histograms.items():
            arrays[f"{name}.counts"] = histogram.counts
            if histogram.edges is not None:
                arrays[f"{name}.edges"] = histogram.edges
        buffer = io.BytesIO()
        np.savez(buffer, allow_pickle=False, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Profile:
        """A profile from `to_bytes`'s bytes; ProfileError when they are no such profile."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
                version = int(arrays["profile_version"])
                if version != PROFILE_VERSION:
                    raise ProfileError(f"profile version {version}, not {PROFILE_VERSION}")
                rows_read, rows_dropped = (int(n) for n in arrays["rows"])
                histograms = {}
                for name in (str(n) for n in arrays["columns"]):
                    if name not in COLUMNS:
                        raise ProfileError(f"unknown column {name[:40]!r}")
                    counts = np.asarray(arrays[f"{name}.counts"], dtype=np.int64)
                    edges = None
                    if name in NUMERIC_COLUMNS:
                        edges = np.asarray(arrays[f"{name}.edges"], dtype=np.float64)
                    _check(name, counts, edges)
                    histograms[name] = Histogram(counts, edges)
        except ProfileError:
            raise
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as error:
            raise ProfileError(f"not a profile: {error}") from None
        return cls(histograms, rows_read, rows_dropped)


def _check(name: str, counts: np.ndarray, edges: np.ndarray | None) -> None:
    expected = UNKNOWN_ZONE_BIN + 1 if edges is None else len(edges) + 1
    if counts.shape != (expected,) or (counts < 0).any():
        raise ProfileError(f"{name}: {counts.shape} counts, not {expected} counts of trips")
    if edges is not None and (not np.isfinite(edges).all() or (np.diff(edges) <= 0).any()):
        raise ProfileError(f"{name}: its bin edges are not finite and increasing")
