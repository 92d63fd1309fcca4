"""The small real model the online unit tests serve."""

from __future__ import annotations

import pytest
from sklearn.ensemble import RandomForestRegressor
from sklearn.feature_extraction import DictVectorizer
from sklearn.pipeline import make_pipeline

from ride_duration.data import features
from tests.support.rides import prepared


@pytest.fixture(scope="module")
def pipeline():
    """A small forest fitted on a generated month."""
    trips = prepared(2021, 2, 2_000)
    regressor = RandomForestRegressor(n_estimators=5, max_depth=8, random_state=0)
    pipeline = make_pipeline(DictVectorizer(), regressor)
    return pipeline.fit(features.feature_records(trips), trips[features.ACTUAL_DURATION].to_numpy())
