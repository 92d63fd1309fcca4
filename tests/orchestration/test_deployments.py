"""Months run on a deployment's workers (`orchestration.deployments`): how each outcome reads.

The runs themselves, on a real Prefect server and workers: tests/integration/test_backfill.py.
"""

from __future__ import annotations

import pytest

from ride_duration.batch.planning import PlannedMonth
from ride_duration.core.months import Month
from ride_duration.orchestration import deployments

MONTH = PlannedMonth(
    "fhv", Month(2022, 2), "in", "s3://bucket/p?X-Amz-Signature=s", "score", "missing"
)


@pytest.mark.parametrize(
    ("seconds", "error", "shown_seconds", "shown_error"),
    [
        (12.34, "worker presumed dead\nTraceback ...", 12.3, "worker presumed dead"),
        (None, "   ", None, ""),
    ],
)
def test_an_outcome_keeps_one_line_and_no_credentials(seconds, error, shown_seconds, shown_error):
    outcome = deployments._outcome(MONTH, "failed", seconds, error)
    assert (outcome.month, outcome.taxi_type, outcome.state) == ("2022-02", "fhv", "failed")
    assert (outcome.seconds, outcome.error) == (shown_seconds, shown_error)
    assert "Signature" not in outcome.output
