"""The columns of scored trips that a profile counts, as training and scoring both take them."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ride_duration.data import features, layouts
from ride_duration.monitoring.profile import ACTUAL_DURATION, PREDICTED_DURATION


def profiled_columns(trips: pa.Table, predictions: np.ndarray) -> dict[str, np.ndarray]:
    """Prepared trips' distance, zones and actual duration, with their predictions."""
    columns = {
        PREDICTED_DURATION: np.asarray(predictions, dtype=np.float64),
        ACTUAL_DURATION: trips[features.ACTUAL_DURATION].to_numpy(),
    }
    for name in (layouts.PICKUP_LOCATION, layouts.DROPOFF_LOCATION):
        if name in trips.column_names:
            columns[name] = features.location_ids(trips[name])
    if layouts.DISTANCE in trips.column_names:
        columns[layouts.DISTANCE] = np.asarray(trips[layouts.DISTANCE].to_numpy(), np.float64)
    return columns
