"""Profiles: fixed-bin histograms counted batch by batch, stored as plain arrays."""

from __future__ import annotations

import io

import numpy as np
import pytest

from ride_duration.data.rules import DISTANCE, DROPOFF_LOCATION, PICKUP_LOCATION
from ride_duration.monitoring import drift
from ride_duration.monitoring.profile import (
    ACTUAL_DURATION,
    COLUMNS,
    PREDICTED_DURATION,
    UNKNOWN_ZONE_BIN,
    Profile,
    ProfileError,
    numeric_counts,
    quantile_edges,
    zone_counts,
)

INF = float("inf")


def month_columns(rng: np.random.Generator, rows: int, scale: float = 1.0) -> dict[str, np.ndarray]:
    """Columns of `rows` made-up trips, distances scaled by `scale`."""
    distance = rng.gamma(2.0, 1.5, rows) * scale
    return {
        DISTANCE: distance,
        PREDICTED_DURATION: 5 + 3 * distance + rng.normal(0, 1, rows),
        ACTUAL_DURATION: np.clip(5 + 3 * distance + rng.normal(0, 4, rows), 1, 60),
        PICKUP_LOCATION: rng.choice(np.r_[-1, np.arange(1, 266)], rows),
        DROPOFF_LOCATION: rng.integers(1, 266, rows),
    }


@pytest.mark.parametrize(
    ("edges", "values"),
    [
        ([1.0, 2.0, 3.0], [0.5, 1.0, 1.5, 2.0, 2.999, 3.0, 10.0]),  # on each edge: the bin above
        ([1.0, 2.0, 3.0], [-INF, INF, -1e308, 1e308]),
        ([0.5], [0.5, 0.5, 0.4999999999999999]),
        ([], [1.0, 2.0]),  # one bin holds everything
        ([1.0, 2.0], []),
    ],
)
def test_numeric_bins_are_numpy_histograms_with_open_ends(edges, values):
    edges, values = np.array(edges, dtype=np.float64), np.array(values, dtype=np.float64)
    expected, _ = np.histogram(values, np.r_[-INF, edges, INF])
    assert numeric_counts(edges, values).tolist() == expected.tolist()


@pytest.mark.parametrize(
    ("ids", "bins"),
    [
        ([1, 1, 265], {1: 2, 265: 1}),
        ([-1, 0, 266, 10_000, -5], {0: 1, UNKNOWN_ZONE_BIN: 4}),  # unknown and no TLC zone
        ([], {}),
    ],
)
def test_zone_bins_are_one_per_id_and_one_for_the_unknown(ids, bins):
    counts = zone_counts(np.array(ids, dtype=np.int64))
    assert len(counts) == UNKNOWN_ZONE_BIN + 1
    assert {i: int(c) for i, c in enumerate(counts) if c} == bins


@pytest.mark.parametrize(
    ("values", "edges"),
    [
        ([1.0] * 10, [1.0]),  # repeated values: the edges are distinct
        (list(range(1, 21)), None),  # 20 values: 19 distinct inner edges
        ([], []),
    ],
)
def test_quantile_edges_are_distinct_and_increasing(values, edges):
    found = quantile_edges(np.array(values, dtype=np.float64))
    assert (np.diff(found) > 0).all()
    if edges is not None:
        assert found.tolist() == edges
    else:
        assert len(found) == 19


@pytest.mark.parametrize("batch_size", [1, 7, 1_000, 3_001, 10_000])
@pytest.mark.parametrize("scale", [1.0, 1.5])
def test_a_month_counted_in_batches_gives_the_figures_of_the_whole_month(batch_size, scale):
    """Counts are integers: batches add up to the whole month's, and so do the figures, to
    1e-12 (they are equal)."""
    rng = np.random.default_rng(7)
    reference = Profile.reference(month_columns(rng, 5_000), rows_read=5_100, rows_dropped=100)
    month = month_columns(rng, 10_000, scale)
    batched = reference.same_bins()
    for start in range(0, 10_000, batch_size):
        part = {name: values[start : start + batch_size] for name, values in month.items()}
        batched.add(part, rows_read=len(part[DISTANCE]), rows_dropped=0)
    # The whole month at once, with numpy alone.
    for column in COLUMNS:
        before = reference.histograms[column]
        if before.edges is None:
            whole = np.bincount(
                np.where((month[column] >= 0) & (month[column] <= 265), month[column], 266),
                minlength=267,
            )
        else:
            whole, _ = np.histogram(month[column], np.r_[-INF, before.edges, INF])
        assert batched.histograms[column].counts.tolist() == whole.tolist()
        assert drift.psi(before.counts, batched.histograms[column].counts) == pytest.approx(
            drift.psi(before.counts, whole), abs=1e-12
        )
        assert drift.js_distance(before.counts, batched.histograms[column].counts) == pytest.approx(
            drift.js_distance(before.counts, whole), abs=1e-12
        )
    assert batched.rows_read == 10_000


def test_the_reference_of_its_own_trips_has_no_drift():
    columns = month_columns(np.random.default_rng(1), 4_000)
    reference = Profile.reference(columns, rows_read=4_000, rows_dropped=0)
    month = reference.same_bins()
    month.add(columns, rows_read=4_000, rows_dropped=0)
    figures = drift.compare(reference, month)
    assert [f.column for f in figures] == list(COLUMNS)
    assert all(f.psi == 0 and f.js_distance == 0 for f in figures)


def test_a_profile_is_stored_as_plain_arrays_and_read_back_whole():
    reference = Profile.reference(
        month_columns(np.random.default_rng(2), 1_000), rows_read=1_200, rows_dropped=200
    )
    data = reference.to_bytes()
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:  # no object arrays
        assert all(arrays[name].dtype != object for name in arrays.files)
    back = Profile.from_bytes(data)
    assert (back.rows_read, back.rows_dropped, back.dropped_share) == (1_200, 200, 200 / 1_200)
    for column in COLUMNS:
        assert back.histograms[column].counts.tolist() == (
            reference.histograms[column].counts.tolist()
        )


def test_a_profile_of_a_taxi_type_without_distance_has_no_distance_histogram():
    columns = month_columns(np.random.default_rng(3), 500)
    del columns[DISTANCE]
    profile = Profile.from_bytes(Profile.reference(columns, 500, 0).to_bytes())
    assert DISTANCE not in profile.histograms
    month = profile.same_bins()
    month.add(columns, 500, 0)
    assert [f.column for f in drift.compare(profile, month)] == [
        PREDICTED_DURATION,
        ACTUAL_DURATION,
        PICKUP_LOCATION,
        DROPOFF_LOCATION,
    ]


def npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


GOOD = {
    "profile_version": np.array(1),
    "rows": np.array([10, 0]),
    "columns": np.array([DISTANCE]),
    f"{DISTANCE}.counts": np.array([4, 6]),
    f"{DISTANCE}.edges": np.array([1.5]),
}


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "not a profile"),
        (b"PK\x03\x04 not a zip", "not a profile"),
        (npz(**{**GOOD, "profile_version": np.array(2)}), "profile version 2"),
        (npz(**{k: v for k, v in GOOD.items() if k != "rows"}), "not a profile"),
        (npz(**{**GOOD, "columns": np.array(["<script>" * 100])}), "unknown column"),
        (npz(**{**GOOD, f"{DISTANCE}.counts": np.array([4, -6])}), "counts of trips"),
        (npz(**{**GOOD, f"{DISTANCE}.counts": np.array([1, 2, 3])}), "counts of trips"),
        (npz(**{**GOOD, f"{DISTANCE}.counts": np.zeros((2, 2))}), "counts of trips"),
        (npz(**{**GOOD, f"{DISTANCE}.edges": np.array([np.nan])}), "finite and increasing"),
        (npz(**{**GOOD, f"{DISTANCE}.edges": np.array([2.0, 1.0])}), "counts of trips"),
        (npz(**{**GOOD, "columns": np.array([{"a": 1}], dtype=object)}), "not a profile"),
        (npz(**{**GOOD, "rows": np.array(["ten", "none"])}), "not a profile"),
    ],
)
def test_a_file_that_is_no_profile_is_refused_in_one_line(data, fragment):
    with pytest.raises(ProfileError) as caught:
        Profile.from_bytes(data)
    message = str(caught.value)
    assert fragment in message
    assert "\n" not in message
    assert len(message) < 300
