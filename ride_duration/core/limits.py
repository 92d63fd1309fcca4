"""The checks a month must pass before its predictions are published, and when to warn."""

from __future__ import annotations

from dataclasses import dataclass

from ride_duration.core.variables import variable


@dataclass(frozen=True)
class Limits:
    """Checks a month must pass before its output is published (None: no limit)."""

    max_drop_ratio: float | None = variable(
        "MAX_DROP_RATIO",
        0.5,
        "fail a month that drops more of its rows than this share, 0 to 1 (`none`: no limit)",
        maximum=1,
    )
    max_rmse: float | None = variable(
        "MAX_RMSE", None, "fail a month whose RMSE (minutes) is above this"
    )
    max_mae: float | None = variable(
        "MAX_MAE", None, "fail a month whose mean absolute error (minutes) is above this"
    )
    max_abs_mean_error: float | None = variable(
        "MAX_ABS_MEAN_ERROR", None, "fail a month whose mean error (minutes) is further from 0"
    )
    max_unknown_pair_share: float | None = variable(
        "MAX_UNKNOWN_PAIR_SHARE",
        None,
        "fail a month with a larger share (0 to 1) of pickup/dropoff pairs the model never saw",
        maximum=1,
    )
    warn_psi: float | None = variable(
        "WARN_PSI",
        0.25,
        "warn, and publish, when a column's drift PSI (docs/monitoring.md) is above this "
        "(`none`: no warning)",
    )
    max_psi: float | None = variable(
        "MAX_PSI", None, "fail a month when a column's drift PSI (docs/monitoring.md) is above this"
    )
    max_js_distance: float | None = variable(
        "MAX_JS_DISTANCE",
        None,
        "fail a month when a column's Jensen-Shannon distance (0 to 1) from the reference is "
        "above this",
        maximum=1,
    )
