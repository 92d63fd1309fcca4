"""Ride ids: one UUID string per trip, built for a whole batch at once with numpy.

Deterministic ids (the default) are RFC 9562 version-8 UUIDs whose 122 free bits are a keyed
hash of (taxi type, year, month, row position in the month's file): scoring the same file again
gives every ride the same id, and ids of different months or taxi types do not collide.
Random ids are version-4 UUIDs from the operating system's randomness.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pyarrow as pa

from ride_duration.core.months import Month

# The two hex digits of every byte value as one uint16, so a lookup moves both at once.
_HEX_PAIRS = np.frombuffer("".join(f"{b:02x}" for b in range(256)).encode(), dtype=np.uint16)
# The 16 bytes of a UUID print as groups of 4-2-2-2-6 bytes: (byte span, text span) per group.
_GROUPS = [
    ((0, 4), (0, 8)),
    ((4, 6), (9, 13)),
    ((6, 8), (14, 18)),
    ((8, 10), (19, 23)),
    ((10, 16), (24, 36)),
]
_UUID_LENGTH = 36


def deterministic_ride_ids(taxi_type: str, month: Month, row_numbers: np.ndarray) -> pa.StringArray:
    """Version-8 UUIDs keyed by the month's file and each ride's row position in it."""
    digest = hashlib.blake2b(f"ride-duration/{taxi_type}/{month}".encode(), digest_size=16).digest()
    key_high, key_low = np.frombuffer(digest, dtype=">u8").astype(np.uint64)
    rows = np.asarray(row_numbers, dtype=np.uint64)
    with np.errstate(over="ignore"):
        high = _mix(_mix(rows ^ key_high) + key_low)
        low = _mix(_mix(rows + key_low) ^ key_high)
    return _format(high, low, version=8)


def random_ride_ids(count: int) -> pa.StringArray:
    """Version-4 (random) UUIDs."""
    words = np.frombuffer(os.urandom(16 * count), dtype=np.uint64).reshape(count, 2)
    return _format(words[:, 0].copy(), words[:, 1].copy(), version=4)


def _mix(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser: a bijection on uint64 that spreads every input bit."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    mixed: np.ndarray = x ^ (x >> np.uint64(31))
    return mixed


def _format(high: np.ndarray, low: np.ndarray, version: int) -> pa.StringArray:
    """Arrow strings of the UUIDs whose 128 bits are `high` and `low` (version bits overwritten)."""
    count = len(high)
    high = (high & np.uint64(0xFFFFFFFFFFFF0FFF)) | np.uint64(version << 12)
    low = (low & np.uint64(0x3FFFFFFFFFFFFFFF)) | np.uint64(0x8000000000000000)  # RFC variant
    octets = np.empty((count, 2), dtype=">u8")
    octets[:, 0] = high
    octets[:, 1] = low
    octets = octets.view(np.uint8).reshape(count, 16)
    digits = _HEX_PAIRS[octets].view(np.uint8)
    text = np.full((count, _UUID_LENGTH), ord("-"), dtype=np.uint8)
    for (byte_start, byte_end), (text_start, text_end) in _GROUPS:
        text[:, text_start:text_end] = digits[:, 2 * byte_start : 2 * byte_end]
    # Arrow's string type has int32 offsets: batches beyond 59 million ids need large_string.
    large = (count + 1) * _UUID_LENGTH > np.iinfo(np.int32).max
    offsets = np.arange(
        0, (count + 1) * _UUID_LENGTH, _UUID_LENGTH, dtype=np.int64 if large else np.int32
    )
    return pa.Array.from_buffers(
        pa.large_string() if large else pa.string(),
        count,
        [None, pa.py_buffer(offsets), pa.py_buffer(text)],
    )
