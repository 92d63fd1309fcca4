"""The lookup table (`forest.table`): the same bits as the tree walk."""

from __future__ import annotations

from tests.support.forests import assert_same_bits, predict_both


def test_the_table_is_the_walk(compiled, score_rides):
    for name, model in compiled.items():
        pickup, dropoff, distance = score_rides
        walk = predict_both(model, pickup, dropoff, distance, "walk")
        assert_same_bits(predict_both(model, pickup, dropoff, distance, "table"), walk)
        assert model.table is not None, name
