"""Ride ids: `ride_duration.data.ride_ids`."""

from __future__ import annotations

import hashlib
import itertools
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ride_duration.core.months import Month
from ride_duration.data.ride_ids import deterministic_ride_ids, random_ride_ids

MASK64 = 2**64 - 1


def reference_id(taxi_type: str, year: int, month: int, row: int) -> str:
    """The documented scheme in plain Python integers: blake2b key, splitmix64, version 8."""
    digest = hashlib.blake2b(
        f"ride-duration/{taxi_type}/{year:04d}-{month:02d}".encode(), digest_size=16
    ).digest()
    key_high, key_low = int.from_bytes(digest[:8], "big"), int.from_bytes(digest[8:], "big")

    def mix(x: int) -> int:
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
        return x ^ (x >> 31)

    high = mix((mix(row ^ key_high) + key_low) & MASK64)
    low = mix(mix((row + key_low) & MASK64) ^ key_high)
    high = (high & 0xFFFFFFFFFFFF0FFF) | (8 << 12)
    low = (low & 0x3FFFFFFFFFFFFFFF) | 0x8000000000000000
    return str(uuid.UUID(int=(high << 64) | low))


def ids(taxi_type: str = "green", year: int = 2021, month: int = 3, rows=(0, 1, 2)) -> list[str]:
    return deterministic_ride_ids(
        taxi_type, Month(year, month), np.asarray(rows, dtype=np.int64)
    ).to_pylist()


@pytest.mark.parametrize(
    ("taxi_type", "year", "month", "row"),
    [
        ("green", 2021, 3, 0),
        ("green", 2021, 3, 1),
        ("yellow", 2009, 1, 123_456),
        ("fhv", 2024, 12, 2**31),
        ("fhvhv", 2100, 6, 2**62 + 5),
    ],
)
def test_deterministic_ids_follow_the_documented_scheme(taxi_type, year, month, row):
    assert ids(taxi_type, year, month, [row]) == [reference_id(taxi_type, year, month, row)]


@pytest.mark.parametrize(
    ("taxi_type", "year", "month", "row", "expected"),
    [
        ("green", 2021, 3, 0, "39c228fd-62cd-8c47-999c-4ce03665412e"),
        ("green", 2021, 3, 41, "7d68063a-0002-8a75-9eec-b1317d95865c"),
        ("yellow", 2023, 1, 999_999, "aabfc3df-d749-84a8-b6f8-61d9a0ee4e4d"),
    ],
)
def test_deterministic_ids_are_pinned(taxi_type, year, month, row, expected):
    # Re-scoring a month after an upgrade must give its rides the same ids as before.
    assert ids(taxi_type, year, month, [row]) == [expected]


def test_deterministic_ids_are_version_8_rfc_uuid_strings():
    values = deterministic_ride_ids("green", Month(2021, 3), np.arange(5_000, dtype=np.int64))
    assert values.type == pa.string()
    for text in values.to_pylist():
        parsed = uuid.UUID(text)
        assert str(parsed) == text  # canonical: lowercase, 8-4-4-4-12
        assert parsed.version == 8
        assert parsed.variant == uuid.RFC_4122


def test_deterministic_ids_are_the_same_across_calls():
    rows = np.array([0, 7, 3, 7, 1_000_000], dtype=np.int64)
    first = ids(rows=rows)
    assert first == ids(rows=rows)
    assert first[1] == first[3]  # the same row, the same id


@pytest.mark.parametrize(
    "other",
    [
        {"rows": (1,)},
        {"month": 4},
        {"year": 2022},
        {"taxi_type": "yellow"},
        {"taxi_type": "fhv"},
        {"taxi_type": "fhvhv"},
    ],
)
def test_deterministic_ids_differ_across_rows_months_years_and_taxi_types(other):
    base = {"taxi_type": "green", "year": 2021, "month": 3, "rows": (0,)}
    assert ids(**base) != ids(**{**base, **other})


def test_deterministic_ids_of_neighbouring_months_do_not_collide():
    rows = np.arange(20_000, dtype=np.int64)
    months = [
        deterministic_ride_ids(taxi_type, Month(2021, month), rows)
        for taxi_type in ("green", "yellow")
        for month in (1, 2, 3)
    ]
    together = pa.chunked_array(months)
    assert pc.count_distinct(together).as_py() == len(together)


def test_deterministic_ids_are_unique_over_a_million_rows():
    values = deterministic_ride_ids("yellow", Month(2023, 1), np.arange(1_000_000, dtype=np.int64))
    assert len(values) == 1_000_000
    assert pc.count_distinct(values).as_py() == 1_000_000


@pytest.mark.parametrize("sizes", [[10], [1, 9], [3, 3, 4], [7, 0, 3], [1] * 10])
def test_deterministic_ids_do_not_depend_on_batches(sizes):
    rows = np.arange(100, 110, dtype=np.int64)
    whole = ids(rows=rows)
    bounds = np.cumsum([0, *sizes])
    batched = [
        value for start, end in itertools.pairwise(bounds) for value in ids(rows=rows[start:end])
    ]
    assert batched == whole


def test_deterministic_ids_accept_other_integer_arrays():
    assert (
        ids(rows=[5, 6])
        == deterministic_ride_ids(
            "green", Month(2021, 3), np.array([5, 6], dtype=np.uint32)
        ).to_pylist()
    )


def test_random_ids_are_version_4_rfc_uuid_strings():
    values = random_ride_ids(2_000)
    assert values.type == pa.string()
    assert len(values) == 2_000
    for text in values.to_pylist():
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_random_ids_are_unique():
    values = pa.chunked_array([random_ride_ids(100_000), random_ride_ids(100_000)])
    assert pc.count_distinct(values).as_py() == 200_000


@pytest.mark.parametrize(
    "make",
    [
        lambda: random_ride_ids(0),
        lambda: deterministic_ride_ids("green", Month(2021, 3), np.array([], dtype=np.int64)),
    ],
    ids=["random", "deterministic"],
)
def test_zero_rows(make):
    values = make()
    assert len(values) == 0
    assert values.type == pa.string()
    values.validate(full=True)


@pytest.mark.parametrize("count", [1, 2, 1_000])
def test_id_arrays_are_valid_arrow(count):
    random_ride_ids(count).validate(full=True)
    deterministic_ride_ids("fhv", Month(2020, 2), np.arange(count, dtype=np.int64)).validate(
        full=True
    )
