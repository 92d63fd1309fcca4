"""The table a scored month writes: its schema and its rows."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ride_duration.data import features, layouts

OUTPUT_SCHEMA = pa.schema(
    [
        ("ride_id", pa.string()),
        ("pickup_datetime", pa.timestamp("us")),
        ("PULocationID", pa.int64()),
        ("DOLocationID", pa.int64()),
        ("actual_duration", pa.float64()),
        ("predicted_duration", pa.float64()),
        ("diff", pa.float64()),
        ("model_version", pa.string()),
    ]
)


def output_table(
    trips: pa.Table, ride_ids: pa.Array, predictions: np.ndarray, model_label: str
) -> pa.Table:
    """The rows written for scored trips, in `OUTPUT_SCHEMA`."""
    actual = trips[features.ACTUAL_DURATION].to_numpy()
    n = trips.num_rows
    return pa.Table.from_arrays(
        [
            ride_ids,
            trips[layouts.PICKUP],
            _optional(trips, layouts.PICKUP_LOCATION, n),
            _optional(trips, layouts.DROPOFF_LOCATION, n),
            pa.array(actual),
            pa.array(predictions),
            pa.array(actual - predictions),
            pa.repeat(pa.scalar(model_label), n).cast(pa.string()),
        ],
        schema=OUTPUT_SCHEMA,
    )


def _optional(trips: pa.Table, name: str, n: int) -> pa.Array:
    return trips[name] if name in trips.column_names else pa.nulls(n, pa.int64())
