"""The durations the online modes answer: minutes, rounded to 0.01 of a minute.

The TLC's pickup and dropoff times are whole seconds, so the durations the model learnt from
have a resolution of 1/60 of a minute, and its error (RMSE) is several minutes: two decimals
are finer than anything the data can tell, and the digits beyond them are noise that makes an
answer look more precise than it is. The web service and the stream scorer both round here, so
that one ride gets one answer from either. Batch scoring does not: its parquet files keep
float64 at full precision, from which a month's errors and metrics are computed.
"""

from __future__ import annotations

from collections.abc import Iterable

DECIMALS = 2


def minutes(durations: Iterable[float]) -> list[float]:
    """Each predicted duration rounded to DECIMALS places, as Python's `round` does it (the
    float nearest to the nearest two-decimal number; numpy's scaled rounding can be one off)."""
    return [round(float(duration), DECIMALS) for duration in durations]
