"""The TLC's taxi types, one trip file per type and month.

Apart from the layouts (`ride_duration.data.layouts`), which need pyarrow, so that the
commands check their arguments in any install.
"""

from __future__ import annotations

from typing import Literal, get_args

TaxiType = Literal["yellow", "green", "fhv", "fhvhv"]
TAXI_TYPES: tuple[str, ...] = get_args(TaxiType)
