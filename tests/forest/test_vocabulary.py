"""Pickup-dropoff pairs as keys and the vectorizer's columns (`forest.vocabulary`)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.feature_extraction import DictVectorizer

from ride_duration.data import features, layouts
from ride_duration.forest.vocabulary import (
    DISTANCE,
    PU_DO,
    UNKNOWN_LOCATION,
    PairVocabulary,
    encode_records,
    pair_key,
)
from tests.support.forests import KNOWN


def test_names_agree_with_the_features_module():
    assert (PU_DO, DISTANCE) == (features.PU_DO, layouts.DISTANCE)
    assert UNKNOWN_LOCATION == features.UNKNOWN_LOCATION


@pytest.mark.parametrize(
    ("pickup", "dropoff", "dtype"),
    [
        (3, 4 + 2**32, np.int64),  # its high bit would spill into the pickup's field
        (3 + 2**32, 4, np.int64),
        (3 - 2**32, 4, np.int64),  # the same key modulo 2**64
        (3, 4 - 2**32, np.int64),
        (2**31 - 1, 4, np.int64),
        (-2, 4, np.int64),
        (2**64 - 1, 4, np.uint64),  # -1 once wrapped into int64
        (3, 2**64 - 1, np.uint64),
    ],
)
def test_ids_outside_the_key_range_are_unseen(pickup, dropoff, dtype, compiled):
    vocabulary = compiled["forest"].vocabulary
    known = vocabulary.encode(np.array([KNOWN[0]]), np.array([KNOWN[1]]))
    assert known[0] >= 0
    ids = np.array([pickup], dtype=dtype), np.array([dropoff], dtype=dtype)
    assert vocabulary.encode(*ids).tolist() == [-1]


def test_naive_keys_would_alias():
    keys = pair_key(np.array([2, 2]), np.array([4, 4 + 2**32]))
    assert keys[0] == keys[1]  # why encode checks ids before it computes keys


@pytest.mark.parametrize(
    ("key", "is_pair"),
    [
        ("1_2", True),
        ("-1_3", True),
        ("4_-1", True),
        ("05_3", False),  # int() reads these, the features never write them
        ("+5_3", False),
        (" 5_3", False),
        ("1_2_3", False),
        ("1_", False),
        ("x_y", False),
        ("4294967296_1", False),
        ("-2_1", False),
    ],
)
def test_the_vocabulary_holds_only_keys_the_features_produce(key, is_pair):
    rows = [{features.PU_DO: key}, {features.PU_DO: "7_8", layouts.DISTANCE: 1.0}, {"other": 2.0}]
    vectorizer = DictVectorizer().fit(rows)
    vocabulary = PairVocabulary.from_dict_vectorizer(vectorizer)
    assert len(vocabulary.pair_keys) == 1 + is_pair
    assert vocabulary.distance_column == vectorizer.vocabulary_[layouts.DISTANCE]
    assert vocabulary.describe(vectorizer.vocabulary_["PU_DO=7_8"]).startswith("PU_DO=7_8 ")


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ({features.PU_DO: "3-4", layouts.DISTANCE: 1.0}, "not '<int>_<int>'"),
        ({features.PU_DO: 34, layouts.DISTANCE: 1.0}, "not '<int>_<int>'"),
        ({features.PU_DO: "3_4", layouts.DISTANCE: "1.0"}, "not a number"),
    ],
)
def test_encode_records_refuses_what_the_features_never_make(row, match, compiled):
    with pytest.raises(ValueError, match=match):
        encode_records(compiled["forest"].vocabulary, [row])


def test_encode_records_reads_rows_as_the_vectorizer_does(compiled):
    rows = [
        {features.PU_DO: "3_4", layouts.DISTANCE: 2},
        {layouts.DISTANCE: 1.5},
        {features.PU_DO: "3_4"},
        {},
    ]
    pairs, distance = encode_records(compiled["forest"].vocabulary, rows)
    known = compiled["forest"].vocabulary.encode(np.array([3]), np.array([4]))[0]
    assert pairs.tolist() == [known, -1, known, -1]
    assert distance.tolist() == [2.0, 1.5, 0.0, 0.0]
