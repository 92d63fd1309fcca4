"""The durations the online modes answer (`ride_duration.online.answers`): two decimals."""

from __future__ import annotations

import numpy as np
import pytest

from ride_duration.online.answers import minutes


@pytest.mark.parametrize(
    ("durations", "answered"),
    [
        ([18.246518442043623, 7.912115905839626], [18.25, 7.91]),  # the demo model's answers
        (np.array([0.0, 59.999, 1.005]), [0.0, 60.0, 1.0]),  # 1.005 is 1.00499... as a float
        ([0.015, 0.025, 0.065], [0.01, 0.03, 0.07]),  # where numpy's np.round says otherwise
        (np.float32([3.5]), [3.5]),
        ([], []),
    ],
)
def test_durations_are_rounded_to_two_decimals_as_round_does(durations, answered):
    result = minutes(durations)
    assert result == answered
    assert all(type(value) is float for value in result)  # JSON numbers, not numpy scalars
