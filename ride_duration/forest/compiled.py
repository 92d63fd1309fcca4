"""The ride-duration forest as plain numpy arrays, evaluated bit for bit like scikit-learn.

`CompiledForest.predict` gives exactly what the pipeline's `predict` gives with `n_jobs=1`
(with more jobs scikit-learn's own sum of the trees changes from run to run), because it does
what scikit-learn does (each checked by `ride_duration.forest.verify` and the tests):
float32(x) <= threshold goes left; every one-hot pair split is at 0.5 and an unseen pair is 0
in every column; the prediction is zeros plus each tree's leaf in estimator order, divided by
the number of trees. NaN, infinite distances and distances beyond float32 are refused.

Two evaluators give the same bits: the walk moves all rows through all trees level by level;
the lookup table holds scikit-learn's own prediction for each pair class (the split-tested pair
a ride has) and distance interval (how many thresholds lie below float32(distance)).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np

from ride_duration.forest.arrays import check_array, distinct
from ride_duration.forest.table import LookupTable
from ride_duration.forest.vocabulary import PairVocabulary, checked_distances

Method = Literal["auto", "table", "walk"]

LEAF = -1  # `feature`, `left` and `right` of a leaf
ONE_HOT_THRESHOLD = 0.5
# Up to this many rows x trees, the walk takes all trees at once (one ride: ~20 steps, not
# 20 per tree); beyond, tree by tree, whose nodes then stay in cache.
_WALK_BLOCK = 1 << 16
_WALK_ROWS = 1 << 15  # rows per block when walking tree by tree: its arrays stay in cache
# Rows per scikit-learn call when building the table or verifying.


@dataclass(frozen=True, eq=False)
class CompiledForest:
    """A fitted forest as numpy arrays: its vocabulary, its trees' nodes, and maybe its table.

    The trees' nodes are concatenated, tree i starting at `roots[i]`. At an internal node, a
    ride goes to `left` (an index into the concatenated nodes) when its value in column
    `feature` (float32) is <= `threshold`, else to `right`; a leaf has feature, left and right
    -1 and carries `value`. The prediction adds the trees' leaf values in order to zeros and
    divides by `n_estimators` (`average`; a single DecisionTreeRegressor returns its leaf).
    """

    vocabulary: PairVocabulary
    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray
    roots: np.ndarray
    n_estimators: int
    average: bool
    table: LookupTable | None = None

    def __post_init__(self) -> None:
        n = len(self.feature)
        check_array("feature", self.feature, np.int32)
        for name, dtype in (
            ("threshold", np.float64),
            ("left", np.int32),
            ("right", np.int32),
            ("value", np.float64),
        ):
            check_array(name, getattr(self, name), dtype, n)
        check_array("roots", self.roots, np.int32, self.n_estimators)
        if self.n_estimators < 1 or (not self.average and self.n_estimators != 1):
            raise ValueError(f"{self.n_estimators} trees, average={self.average}")
        check_trees(self.left, self.right, self.roots)
        self._check_splits()
        if self.table is not None:
            self._check_table(self.table)

    def predict(
        self,
        pair_column: np.ndarray,
        distance: np.ndarray | None = None,
        *,
        method: Method = "auto",
    ) -> np.ndarray:
        """The model's predictions (float64), exactly as scikit-learn's with n_jobs=1.

        `pair_column` holds each ride's one-hot column (`PairVocabulary.encode`, -1: unseen
        pair); `distance` each ride's trip_distance, required when the model uses it (else
        ignored). NaN, infinite and beyond-float32 distances raise ValueError. `method`:
        "table" or "walk"; "auto" takes the table when there is one.
        """
        pairs = self._checked_pairs(pair_column)
        x = self._checked_distance(distance, len(pairs))
        if method == "auto":
            method = "walk" if self.table is None else "table"
        if method == "table":
            return self._lookup(pairs, x)
        if method == "walk":
            return self._walk(pairs, x)
        raise ValueError(f"method is {method!r}, not 'auto', 'table' or 'walk'")

    @property
    def features(self) -> tuple[str, ...]:
        """The features the forest reads."""
        return self.vocabulary.features

    @property
    def split_pair_columns(self) -> np.ndarray:
        """The sorted distinct pair columns that some split tests."""
        tested = self.feature[self.feature >= 0]
        return distinct(tested[tested != self._distance_code]).astype(np.int64)

    @property
    def distance_cuts(self) -> np.ndarray:
        """The sorted distinct distance thresholds (float64)."""
        return distinct(self.threshold[self.feature == self._distance_code])

    @property
    def _distance_code(self) -> int:
        column = self.vocabulary.distance_column
        return -2 if column is None else column

    @cached_property
    def _column_class(self) -> np.ndarray:
        """Indexed by pair column + 1: the table class, 0 for other pairs, -1 for non-pairs."""
        classes = np.full(self.vocabulary.n_columns + 1, -1, dtype=np.int64)
        classes[0] = 0  # unseen pairs
        classes[self.vocabulary.pair_columns + 1] = 0
        if self.table is not None:
            classes[self.table.pair_columns + 1] = np.arange(1, len(self.table.pair_columns) + 1)
        return classes

    @cached_property
    def _walker(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """The nodes rearranged so that one step of the walk is a few gathers.

        A ride goes right when its pair column equals `pair_test` (pair nodes; -2 elsewhere,
        which no ride has) or when float32(distance) > `distance_test` (distance nodes; +inf
        elsewhere). Node i's children sit at 2i (left) and 2i + 1 (right) of `children`;
        a leaf is its own two children, so every row can take the same number of steps.
        """
        internal = self.feature != LEAF
        is_distance = self.feature == self._distance_code
        pair_test = np.where(internal & ~is_distance, self.feature, -2).astype(np.intp)
        distance_test = np.where(is_distance, self.threshold, np.inf)
        itself = np.arange(len(self.feature), dtype=np.intp)
        children = np.empty(2 * len(itself), dtype=np.intp)
        children[0::2] = np.where(internal, self.left, itself)
        children[1::2] = np.where(internal, self.right, itself)
        return pair_test, distance_test, children, self._levels

    @cached_property
    def _levels(self) -> int:
        """The forest's depth, for the walk (the lookup table needs none)."""
        return tree_levels(self.left, self.right, self.roots)

    def _checked_pairs(self, pair_column: np.ndarray) -> np.ndarray:
        pairs = np.asarray(pair_column)
        if pairs.ndim != 1 or pairs.dtype.kind not in "iu":
            raise TypeError(f"pair_column must be a 1-d integer array, got {pairs.dtype}")
        pairs = pairs.astype(np.int64, copy=False)
        if len(pairs) and (pairs.min() < -1 or pairs.max() >= self.vocabulary.n_columns):
            raise ValueError(f"pair_column outside [-1, {self.vocabulary.n_columns})")
        if np.any(self._column_class[pairs + 1] < 0):
            raise ValueError("pair_column holds a column that is not a pair's")
        return pairs

    def _checked_distance(self, distance: np.ndarray | None, n: int) -> np.ndarray | None:
        """float32(distance) as float64, or None when the model has no distance column."""
        if self.vocabulary.distance_column is None:
            return None
        return checked_distances(distance, n, as_float32=True)

    def _lookup(self, pairs: np.ndarray, x: np.ndarray | None) -> np.ndarray:
        if self.table is None:
            raise ValueError("this compiled forest has no lookup table: use method='walk'")
        classes = self._column_class[pairs + 1]
        interval = 0 if x is None else np.searchsorted(self.table.cuts, x, side="left")
        values: np.ndarray = self.table.values[classes, interval]
        return values

    def _walk(self, pairs: np.ndarray, x: np.ndarray | None) -> np.ndarray:
        """Walk all rows level by level, then add the trees' leaf values in their order."""
        x = np.zeros(len(pairs)) if x is None else x  # no distance node tests it
        if len(pairs) * len(self.roots) <= _WALK_BLOCK:
            return self._combine(self._leaves(self.roots, pairs, x), len(pairs))
        out = np.empty(len(pairs), dtype=np.float64)
        for start in range(0, len(pairs), _WALK_ROWS):
            rows = slice(start, start + _WALK_ROWS)
            leaf_values = (
                self._leaves(self.roots[tree : tree + 1], pairs[rows], x[rows])[0]
                for tree in range(len(self.roots))
            )
            out[rows] = self._combine(leaf_values, len(out[rows]))
        return out

    def _combine(self, leaf_values: Iterable[np.ndarray], n: int) -> np.ndarray:
        """The forest's output from each tree's leaf values, in estimator order."""
        if not self.average:
            return next(iter(leaf_values))
        # scikit-learn's order of operations: zeros, += each tree in estimator order, /= n.
        # Neither a sum in another order (np.sum is pairwise) nor * (1 / n) gives its bits.
        total = np.zeros(n, dtype=np.float64)
        for tree_values in leaf_values:
            total += tree_values
        total /= self.n_estimators
        return total

    def _leaves(self, roots: np.ndarray, pairs: np.ndarray, x: np.ndarray) -> np.ndarray:
        """The leaf values (trees x rows) of the trees at `roots`, one step per level: a few
        rows through all trees at once, or many rows through one tree, whose contiguous nodes
        then stay in cache."""
        pair_test, distance_test, children, levels = self._walker
        node = np.repeat(roots.astype(np.intp)[:, None], len(pairs), axis=1)
        pairs, x = pairs[None, :], x[None, :]
        for _ in range(levels):
            right = (pair_test[node] == pairs) | (distance_test[node] < x)
            node = children[2 * node + right]
        return self.value[node]

    def _check_splits(self) -> None:
        internal = self.feature != LEAF
        features = self.feature[internal]
        if len(features) and (features.min() < 0 or features.max() >= self.vocabulary.n_columns):
            raise ValueError("a node tests a column outside the vocabulary")
        is_distance = features == self._distance_code
        pair_features = features[~is_distance]
        # "table": a lookup over the columns' range (at most n_columns), not a sort of them all.
        known = np.isin(pair_features, self.vocabulary.pair_columns, kind="table")
        if not known.all():
            raise ValueError(f"a node tests column {pair_features[~known][0]}, not a feature")
        thresholds = self.threshold[internal]
        if np.any(thresholds[~is_distance] != ONE_HOT_THRESHOLD):
            raise ValueError("a one-hot split has a threshold other than 0.5")
        if not np.isfinite(thresholds[is_distance]).all():
            raise ValueError("a distance split has a threshold that is not finite")
        if not np.isfinite(self.value[~internal]).all():
            raise ValueError("a leaf value is not finite")

    def _check_table(self, table: LookupTable) -> None:
        if not np.array_equal(table.pair_columns, self.split_pair_columns):
            raise ValueError("the table's pair classes are not the pairs the trees test")
        if not np.array_equal(table.cuts, self.distance_cuts):
            raise ValueError("the table's cuts are not the trees' distance thresholds")


def check_trees(left: np.ndarray, right: np.ndarray, roots: np.ndarray) -> None:
    """ValueError unless the nodes form trees starting at `roots`: each tree's nodes are the
    range from its root to the next root, a node's children lie after it in its own tree, and
    every node is reached from its root exactly once."""
    n = len(left)
    if not len(roots) or roots[0] != 0 or np.any(np.diff(roots) <= 0) or roots[-1] >= n:
        raise ValueError("roots do not start trees in order")
    starts_and_end = np.append(roots, n)
    ends = np.repeat(starts_and_end[1:], np.diff(starts_and_end))  # each node's tree's end
    index = np.arange(n)
    internal = left != LEAF
    for children in (left, right):
        inside = (children > index) & (children < ends)
        if np.any(internal & ~inside) or np.any(~internal & (children != LEAF)):
            raise ValueError("a node's child is outside its tree or before it")
    # Children come after their parents, in their tree: each node but the roots being exactly
    # one node's child is then each node being reached exactly once (by induction on index).
    children = np.concatenate([left[internal], right[internal]])
    is_child = np.zeros(n, dtype=bool)
    is_child[children] = True
    is_child[roots] = ~is_child[roots]  # a root must be nobody's child
    if len(children) != n - len(roots) or not is_child.all():
        raise ValueError("some nodes are not reached exactly once from their tree's root")


def tree_levels(left: np.ndarray, right: np.ndarray, roots: np.ndarray) -> int:
    """The forest's depth: the most splits from a root to a leaf (nodes `check_trees` took)."""
    internal = left != LEAF
    frontier, levels = roots.astype(np.intp), 0
    while len(frontier := frontier[internal[frontier]]):
        frontier = np.concatenate([left[frontier], right[frontier]]).astype(np.intp)
        levels += 1
    return levels
