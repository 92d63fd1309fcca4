"""The compiled forest's evaluators (`forest.compiled`): bit for bit scikit-learn's n_jobs=1."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ride_duration.forest.compiled import _WALK_BLOCK, LEAF, check_trees, tree_levels
from tests.support.forests import (
    BOTH,
    FLOAT32_MAX,
    METHODS,
    MODELS,
    assert_same_bits,
    float32_below,
    float32_step,
    predict_both,
    sklearn_predict,
)

# Distances around each threshold t of the forest
AROUND_THRESHOLDS = {
    "on a float32 threshold": lambda cuts: cuts[cuts == float32_below(cuts)],
    "float64 just above a float32 threshold": lambda cuts: np.nextafter(
        cuts[cuts == float32_below(cuts)], np.inf
    ),
    "float32 at or below": float32_below,
    "float32 just above": lambda cuts: float32_step(float32_below(cuts), np.inf),
    "float32 two below": lambda cuts: float32_step(float32_below(cuts), -np.inf),
    "float32 two above": lambda cuts: float32_step(
        float32_step(float32_below(cuts), np.inf), np.inf
    ),
    "float64 between the float32 neighbours": lambda cuts: (
        (float32_below(cuts) + float32_step(float32_below(cuts), np.inf)) / 2
    ),
}


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("method", METHODS)
def test_a_batch_is_sklearns_bit_for_bit(name, method, compiled, references, score_rides):
    pickup, dropoff, distance = score_rides
    expected = sklearn_predict(references[name], pickup, dropoff, distance, MODELS[name][1])
    got = predict_both(compiled[name], pickup, dropoff, distance, method)
    assert_same_bits(got, expected)


def test_the_score_rides_hold_the_awkward_cases(compiled, score_rides):
    model = compiled["forest"]
    pickup, dropoff, distance = score_rides
    pairs = model.vocabulary.encode(pickup, dropoff)
    valid = (pickup < 12) & (dropoff < 12)
    assert np.any(pairs < 0)
    assert np.all(pairs[valid] >= 0)
    assert np.any((pickup == -1) & (pairs >= 0))
    cuts = model.distance_cuts
    x32 = distance.astype(np.float32).astype(np.float64)
    assert np.any(np.isin(x32, cuts))  # ties: a distance's float32 on a threshold
    # float32 rounding moves some distances across a threshold
    assert np.any(np.searchsorted(cuts, x32) != np.searchsorted(cuts, distance))
    assert len(pairs) * len(model.roots) > _WALK_BLOCK  # the tree-by-tree walk


@pytest.mark.parametrize(
    ("pickup", "dropoff", "distance"),
    [
        (3, 4, 2.5),
        (-1, 5, 0.0),
        (7, -1, 1.23),
        (-1, -1, 12.0),
        (13, 13, 3.3),  # a pair never trained on
        (2**40, 3, 1.0),
        (4, 2**32 + 3, 1.0),  # would be key (4, 3) if the dropoff's bits spilled over
        (3, 4, -2.0),  # negative: refused by the product, still sklearn's value
        (3, 4, FLOAT32_MAX),
        (5, 6, 1e-45),
    ],
)
@pytest.mark.parametrize("method", METHODS)
def test_one_ride(pickup, dropoff, distance, method, compiled, references):
    ride = np.array([pickup]), np.array([dropoff]), np.array([distance])
    expected = sklearn_predict(references["forest"], *ride, BOTH)
    assert_same_bits(predict_both(compiled["forest"], *ride, method), expected)


@pytest.mark.parametrize("kind", list(AROUND_THRESHOLDS))
@pytest.mark.parametrize("name", ["forest", "forest-dense-vectorizer", "distance-only"])
def test_both_sides_of_every_threshold(kind, name, compiled, references):
    model = compiled[name]
    distances = AROUND_THRESHOLDS[kind](model.distance_cuts)
    assert len(distances) > 10
    pairs = [(-1, -1), (3, 4), (20, 20)]  # known with unknown ids, known, unseen
    pickup = np.repeat([p for p, _ in pairs], len(distances))
    dropoff = np.repeat([d for _, d in pairs], len(distances))
    distance = np.tile(distances, len(pairs))
    expected = sklearn_predict(references[name], pickup, dropoff, distance, MODELS[name][1])
    for method in METHODS:
        assert_same_bits(predict_both(model, pickup, dropoff, distance, method), expected)


def test_float32_rounding_decides_some_rides(compiled, references):
    """A float64 distance just above a float32 threshold goes left, as the threshold does."""
    cuts = compiled["forest"].distance_cuts
    on = cuts[cuts == float32_below(cuts)]
    reference = references["forest"]
    ones = np.full(len(on), 3)
    at = sklearn_predict(reference, ones, ones + 1, on, BOTH)
    just_above = sklearn_predict(reference, ones, ones + 1, np.nextafter(on, np.inf), BOTH)
    next_float32 = sklearn_predict(reference, ones, ones + 1, float32_step(on, np.inf), BOTH)
    assert_same_bits(just_above, at)
    assert np.any(next_float32 != at)  # so a float64 comparison would have got them wrong


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 1e39, -1e39])
def test_bad_distances_raise_like_sklearn(value, method, compiled, references):
    distance = np.array([1.0, value, 2.0])
    pickup, dropoff = np.array([3, 4, 5]), np.array([4, 5, 6])
    with pytest.raises(ValueError, match="NaN, infinite or too large for float32"):
        predict_both(compiled["forest"], pickup, dropoff, distance, method)
    with pytest.raises(ValueError, match=r"(?i)infinity|NaN"), np.errstate(over="ignore"):
        sklearn_predict(references["forest"], pickup, dropoff, distance, BOTH)


@pytest.mark.parametrize(
    ("pair_column", "distance", "error", "match"),
    [
        (np.array([0.0]), np.array([1.0]), TypeError, "integer array"),
        (np.array([10**6]), np.array([1.0]), ValueError, "pair_column outside"),
        (np.array([-2]), np.array([1.0]), ValueError, "pair_column outside"),
        ("distance column", np.array([1.0]), ValueError, "not a pair's"),
        (np.array([-1]), None, ValueError, "give a distance"),
        (np.array([-1, -1]), np.array([1.0]), ValueError, "distances of shape"),
    ],
)
def test_predict_refuses_bad_input(pair_column, distance, error, match, compiled):
    model = compiled["forest"]
    if isinstance(pair_column, str):
        pair_column = np.array([model.vocabulary.distance_column])
    with pytest.raises(error, match=match):
        model.predict(pair_column, distance)


def test_predict_refuses_an_unknown_method_and_a_missing_table(compiled):
    model = compiled["forest"]
    with pytest.raises(ValueError, match="not 'auto', 'table' or 'walk'"):
        model.predict(np.array([-1]), np.array([1.0]), method="fast")
    with pytest.raises(ValueError, match="no lookup table"):
        replace(model, table=None).predict(np.array([-1]), np.array([1.0]), method="table")


def _nodes(*pairs: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    left, right = zip(*pairs, strict=True)
    return np.array(left, dtype=np.int32), np.array(right, dtype=np.int32)


# A chain of 64 nodes whose left and right child are both the next node: reached 2**63 times
# if followed level by level; the check follows no level.
CHAIN = [(i + 1, i + 1) for i in range(63)] + [(LEAF, LEAF)]


@pytest.mark.parametrize(
    ("nodes", "roots", "levels", "error"),
    [
        ([(LEAF, LEAF)], [0], 0, None),
        ([(1, 2), (LEAF, LEAF), (LEAF, LEAF)], [0], 1, None),
        ([(1, 2), (LEAF, LEAF), (3, 4), (LEAF, LEAF), (LEAF, LEAF), (LEAF, LEAF)], [0, 5], 2, None),
        ([(1, 1), (LEAF, LEAF), (LEAF, LEAF)], [0], None, "not reached exactly once"),
        ([(1, 2), (LEAF, LEAF), (LEAF, LEAF), (LEAF, LEAF)], [0], None, "not reached exactly once"),
        (CHAIN, [0], None, "not reached exactly once"),
        ([(1, 2), (LEAF, LEAF), (LEAF, LEAF)], [1], None, "roots do not start trees"),
        ([(2, 1), (LEAF, LEAF), (LEAF, LEAF)], [0, 2], None, "outside its tree"),
        ([(0, 1), (LEAF, LEAF)], [0], None, "outside its tree or before it"),
    ],
    ids=[
        "a leaf",
        "one split",
        "two trees",
        "one child twice",
        "a node nobody reaches",
        "a chain of shared children",
        "roots not from 0",
        "a child in the next tree",
        "a node its own child",
    ],
)
def test_the_nodes_must_form_trees_and_their_depth_is_counted(nodes, roots, levels, error):
    left, right = _nodes(*nodes)
    roots = np.array(roots, dtype=np.int32)
    if error is None:
        check_trees(left, right, roots)
        assert tree_levels(left, right, roots) == levels
    else:
        with pytest.raises(ValueError, match=error):
            check_trees(left, right, roots)
