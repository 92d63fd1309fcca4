"""A month's quality (`batch.quality`): metrics from running sums, and the limits that fail it."""

from __future__ import annotations

import numpy as np
import pytest

from ride_duration.batch.quality import Totals, check
from ride_duration.core.errors import QualityError
from ride_duration.core.limits import Limits


def test_metrics_over_batches_are_those_of_the_whole_month():
    diffs = [np.array([1.0, -2.0]), np.array([]), np.array([3.0, 0.5, -0.5])]
    totals = Totals()
    for diff, unknown in zip(diffs, [1, 0, 2], strict=True):
        totals.add(diff, unknown)
    whole = np.concatenate(diffs)
    metrics = totals.metrics()
    assert metrics["rmse"] == round(float(np.sqrt(np.mean(whole**2))), 6)
    assert metrics["mae"] == round(float(np.mean(np.abs(whole))), 6)
    assert metrics["mean_error"] == round(float(np.mean(whole)), 6)
    assert metrics["unknown_pair_share"] == round(3 / 5, 6)


def test_no_rows_have_no_metrics_and_a_model_without_pairs_no_pair_share():
    assert set(Totals().metrics().values()) == {None}
    totals = Totals()
    totals.add(np.array([1.0]), None)
    totals.add(np.array([2.0]), 0)
    assert totals.metrics()["unknown_pair_share"] is None


@pytest.mark.parametrize(
    ("limits", "metrics", "dropped", "says"),
    [
        (Limits(max_drop_ratio=0.5), {}, {"a": 60, "b": 1}, "61.0% of rows dropped (most: a 60)"),
        (Limits(max_drop_ratio=None, max_rmse=5.0), {"rmse": 6.0}, {}, "rmse 6 > MAX_RMSE 5"),
        (Limits(max_mae=1.0), {"mae": 1.5}, {}, "mae 1.5 > MAX_MAE 1"),
        (Limits(max_abs_mean_error=1.0), {"mean_error": -2.0}, {}, "mean_error -2 > MAX_ABS"),
        (Limits(max_unknown_pair_share=0.1), {"unknown_pair_share": 0.2}, {}, "unknown_pair"),
    ],
)
def test_a_crossed_limit_fails_the_month_saying_which(limits, metrics, dropped, says):
    with pytest.raises(QualityError, match="green 2021-03 failed its checks") as caught:
        check("green 2021-03", 100, dropped, metrics, limits)
    assert says in str(caught.value)
    assert str(caught.value).endswith("nothing was published")


@pytest.mark.parametrize(
    ("limits", "metrics", "dropped"),
    [
        (Limits(), {"rmse": 100.0, "mae": None}, {"a": 50}),  # defaults: only the drop ratio
        (Limits(max_rmse=5.0), {"rmse": None}, {}),  # no rows scored: nothing to compare
        (Limits(max_drop_ratio=None), {}, {"a": 100}),
    ],
)
def test_a_month_within_its_limits_passes(limits, metrics, dropped):
    check("green 2021-03", 100, dropped, metrics, limits)
