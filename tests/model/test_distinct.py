"""Predicting each distinct row once, with a cache across batches (`model.distinct`)."""

from __future__ import annotations

import numpy as np
import pytest

from ride_duration.model.distinct import PredictionCache


class CountingModel:
    """A model whose prediction is a pure function of its row, counting the rows it predicts."""

    def __init__(self) -> None:
        self.rows = 0

    def __call__(self, pair_column, distance):
        self.rows += len(pair_column)
        return pair_column * 1000.0 + (0.0 if distance is None else distance)


@pytest.mark.parametrize(
    ("batches", "with_distance", "limit", "expected_rows_predicted"),
    [
        ([[1, 1, 1, 2]], True, 100, 2),  # duplicates inside one batch
        ([[1, 2], [2, 1, 3]], True, 100, 3),  # rows from an earlier batch come cached
        ([[1, 2], [2, 1, 3]], True, 1, 4),  # the cache keeps at most `limit` rows
        ([[-1, -1, 5]], False, 100, 2),  # unknown pairs and no distance feature
        ([[]], True, 100, 0),
    ],
)
def test_the_prediction_cache_predicts_each_distinct_row_once_and_exactly(
    batches, with_distance, limit, expected_rows_predicted
):
    model = CountingModel()
    cache = PredictionCache(limit=limit)
    for batch in batches:
        pairs = np.asarray(batch, dtype=np.int64)
        distance = (np.abs(pairs) * 0.5 + 0.25) if with_distance else None
        got = cache.predictions(pairs, distance, model)
        np.testing.assert_array_equal(got, CountingModel()(pairs, distance))
    assert model.rows == expected_rows_predicted


def test_same_pair_with_other_distances_are_distinct_rows():
    model = CountingModel()
    pairs = np.array([7, 7, 7, 7], dtype=np.int64)
    distance = np.array([1.0, 2.0, 1.0, 0.1 + 0.2])
    got = PredictionCache().predictions(pairs, distance, model)
    np.testing.assert_array_equal(got, [7001.0, 7002.0, 7001.0, 7000.0 + (0.1 + 0.2)])
    assert model.rows == 3


def test_the_cross_batch_lookup_turns_itself_off_when_rows_do_not_repeat():
    model = CountingModel()
    cache = PredictionCache()
    for start in (0, 100, 200):
        pairs = np.arange(start, start + 100, dtype=np.int64)
        got = cache.predictions(pairs, pairs * 0.5, model)
        np.testing.assert_array_equal(got, pairs * 1000.0 + pairs * 0.5)
    assert not cache.enabled
    assert len(cache.keys) == 0
    assert model.rows == 300
