"""A month's quality: its error metrics and drift, and the limits that can fail it.

The metrics are in minutes, from `diff = actual - predicted` of every scored trip: RMSE, MAE,
mean error, and the share of trips whose pickup/dropoff pair the model never saw. The drift
figures are `ride_duration.monitoring.drift`'s, per column.
"""

from __future__ import annotations

import logging

import numpy as np

from ride_duration.core.errors import QualityError
from ride_duration.core.limits import Limits
from ride_duration.monitoring.drift import ColumnDrift

logger = logging.getLogger(__name__)


class Totals:
    """Running sums over a month's batches, from which its metrics follow."""

    def __init__(self) -> None:
        self.rows = 0
        self.unknown_pairs: int | None = 0  # None: the model's features say nothing of pairs
        self._sums = np.zeros(3)  # of diff, of diff squared, of |diff|

    def add(self, diff: np.ndarray, unknown_pairs: int | None) -> None:
        """Count one batch's differences and its trips with an unseen pair."""
        self.rows += len(diff)
        self._sums += (diff.sum(), np.square(diff).sum(), np.abs(diff).sum())
        if unknown_pairs is None or self.unknown_pairs is None:
            self.unknown_pairs = None
        elif len(diff):
            self.unknown_pairs += unknown_pairs

    def metrics(self) -> dict[str, float | None]:
        """RMSE, MAE and mean error (actual - predicted) in minutes, and the unknown-pair share."""
        if self.rows == 0:
            return {"rmse": None, "mae": None, "mean_error": None, "unknown_pair_share": None}
        total, squares, absolute = self._sums
        return {
            "rmse": round(float(np.sqrt(squares / self.rows)), 6),
            "mae": round(float(absolute / self.rows), 6),
            "mean_error": round(float(total / self.rows), 6),
            "unknown_pair_share": (
                None if self.unknown_pairs is None else round(self.unknown_pairs / self.rows, 6)
            ),
        }


def check(
    label: str,
    rows_read: int,
    rows_dropped: dict[str, int],
    metrics: dict[str, float | None],
    limits: Limits,
    drift: list[ColumnDrift] | None = None,
) -> None:
    """Fail the month, before anything is published, when a limit is crossed; warn when a
    column's drift is above WARN_PSI."""
    problems = []
    dropped = sum(rows_dropped.values())
    if rows_read and limits.max_drop_ratio is not None:
        ratio = dropped / rows_read
        if ratio > limits.max_drop_ratio:
            worst = max(rows_dropped, key=rows_dropped.__getitem__)
            problems.append(
                f"{ratio:.1%} of rows dropped (most: {worst} {rows_dropped[worst]:,}) "
                f"> MAX_DROP_RATIO {limits.max_drop_ratio:g}"
            )
    checks = (
        ("rmse", limits.max_rmse, "MAX_RMSE"),
        ("mae", limits.max_mae, "MAX_MAE"),
        ("mean_error", limits.max_abs_mean_error, "MAX_ABS_MEAN_ERROR"),
        ("unknown_pair_share", limits.max_unknown_pair_share, "MAX_UNKNOWN_PAIR_SHARE"),
    )
    for name, limit, setting in checks:
        value = metrics.get(name)
        if limit is not None and value is not None and abs(value) > limit:
            problems.append(f"{name} {value:.4g} > {setting} {limit:g}")
    drift = drift or []
    problems += drift_crossings(drift, limits.max_psi, limits.max_js_distance)
    if problems:
        raise QualityError(
            f"{label} failed its checks: {'; '.join(problems)}; nothing was published"
        )
    warnings = drift_crossings(drift, limits.warn_psi, None, setting="WARN_PSI")
    if warnings:
        logger.warning(
            "%s drifted: %s; published (MAX_PSI fails a month)", label, "; ".join(warnings)
        )


def drift_crossings(
    drift: list[ColumnDrift],
    max_psi: float | None,
    max_js_distance: float | None,
    setting: str = "MAX_PSI",
) -> list[str]:
    """What crosses the limits, one phrase per column and figure: "trip_distance psi 0.61 >
    MAX_PSI 0.5"."""
    crossed = []
    for column in drift:
        for figure, limit, name in (
            ("psi", max_psi, setting),
            ("js_distance", max_js_distance, "MAX_JS_DISTANCE"),
        ):
            value = column.figure(figure)
            if limit is not None and value is not None and value > limit:
                crossed.append(f"{column.column} {figure} {value:.4g} > {name} {limit:g}")
    return crossed
