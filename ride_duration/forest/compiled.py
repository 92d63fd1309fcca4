"""The ride-duration forest as plain numpy arrays, evaluated bit for bit like scikit-learn.

The model is `Pipeline(DictVectorizer(), RandomForestRegressor(...))` fitted on the feature
dicts of `ride_duration.data.features` ({"PU_DO": "<pickup>_<dropoff>", "trip_distance": miles}).
`compile_pipeline` turns it into a `CompiledForest`, `save` and `load` keep that as one .npz
file of plain arrays (no pickle), and `CompiledForest.predict` gives exactly what the
pipeline's `predict` gives with `n_jobs=1` (with more jobs scikit-learn's own sum of the trees
changes from run to run). What that takes, each measured on real months (FOREST.md):

- scikit-learn casts X to float32, then each node tests `float32(x) <= threshold` (a float64),
  and `<=` goes left;
- every split on a one-hot pair column is at 0.5, and an unseen pair is 0 in every column;
- the prediction is zeros plus each tree's leaf value in estimator order, divided by the
  number of trees;
- NaN, infinite distances and distances beyond float32 are refused, as scikit-learn refuses
  them.

Two evaluators give the same bits. The tree walk moves all rows through all trees level by
level. The lookup table applies to this model, whose only numeric feature is the distance:
each tree's decisions for a ride depend only on which split-tested pair the ride has (its pair
class) and on how many distance thresholds lie below float32(distance) (its interval), so the
forest is a table of scikit-learn's own predictions, one per class and interval.

`verify` compares both evaluators with scikit-learn on the training rows and on both sides of
every distance threshold. scikit-learn and scipy are imported only by the functions that take
a scikit-learn pipeline (compiling and verifying): loading and predicting need numpy alone.
"""

from __future__ import annotations

import copy
import json
import os
import zipfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from numbers import Real
from pathlib import Path
from typing import Any, Literal

import numpy as np

FORMAT = "ride-duration-compiled-forest"
FORMAT_VERSION = 1
FILE_NAME = "forest.npz"

# The names of ride_duration.data.features and ride_duration.data.layouts, repeated here because those
# modules import pyarrow, which prediction must not need (tests check that they agree).
PU_DO = "PU_DO"
DISTANCE = "trip_distance"
UNKNOWN_LOCATION = -1
# A pair is one int64 key of two 32-bit fields holding id + 1 (so the unknown location -1
# fits): ids must lie in [-1, MAX_ID).
MAX_ID = 2**31 - 1

Method = Literal["auto", "table", "walk"]

_LEAF = -1  # `feature`, `left` and `right` of a leaf
_ONE_HOT_THRESHOLD = 0.5
# Up to this many rows x trees, the walk takes all trees at once (one ride: ~20 steps, not
# 20 per tree); beyond, tree by tree, whose nodes then stay in cache.
_WALK_BLOCK = 1 << 16
_WALK_ROWS = 1 << 15  # rows per block when walking tree by tree: its arrays stay in cache
# Rows per scikit-learn call when building the table or verifying.
_REFERENCE_BLOCK = 1 << 18
_INT32_MAX = int(np.iinfo(np.int32).max)
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class NotCompilableError(ValueError):
    """The model is not one this module evaluates exactly; the message says why."""


class CompiledMismatchError(ValueError):
    """The compiled forest differs from scikit-learn on some rows; the message says where."""


def pair_key(pickup: np.ndarray, dropoff: np.ndarray) -> np.ndarray:
    """The int64 key of each (pickup, dropoff) pair; ids must lie in [-1, MAX_ID)."""
    return ((np.asarray(pickup, np.int64) + 1) << 32) | (np.asarray(dropoff, np.int64) + 1)


@dataclass(frozen=True, eq=False)
class PairVocabulary:
    """How the model's DictVectorizer encodes a ride: one one-hot column per known pair.

    `pair_keys` are the known pairs as sorted `pair_key`s and `pair_columns` their columns;
    `distance_column` is the column of trip_distance (None when the model does not use it);
    `n_columns` is the vectorizer's width.
    """

    pair_keys: np.ndarray
    pair_columns: np.ndarray
    distance_column: int | None
    n_columns: int

    def __post_init__(self) -> None:
        if not 0 <= self.n_columns <= _INT32_MAX:
            raise ValueError(f"n_columns is {self.n_columns}, not in [0, 2**31)")
        _check_array("pair_keys", self.pair_keys, np.int64)
        _check_array("pair_columns", self.pair_columns, np.int64, len(self.pair_keys))
        if np.any(np.diff(self.pair_keys) <= 0):
            raise ValueError("pair_keys are not sorted and distinct")
        pickup, dropoff = _key_ids(self.pair_keys)
        if not _valid_ids(pickup).all() or not _valid_ids(dropoff).all():
            raise ValueError("pair_keys hold ids outside [-1, 2**31 - 1)")
        columns = self.pair_columns
        if len(columns) and (columns.min() < 0 or columns.max() >= self.n_columns):
            raise ValueError(f"pair_columns outside [0, {self.n_columns})")
        if len(np.unique(columns)) != len(columns):
            raise ValueError("two pairs share a column")
        column = self.distance_column
        if column is not None and (not 0 <= column < self.n_columns or column in columns):
            raise ValueError(f"distance_column {column} is not a free column")

    @classmethod
    def from_dict_vectorizer(cls, vectorizer: Any) -> PairVocabulary:
        """The pairs and distance column of a fitted DictVectorizer.

        Keys our features never produce (another feature, a pair not written as
        "<int>_<int>", ids outside [-1, 2**31 - 1)) are ignored: no ride gets their column.
        """
        vocabulary: dict[str, int] = vectorizer.vocabulary_
        prefix = f"{PU_DO}{vectorizer.separator}"
        keys, columns = [], []
        for name, column in vocabulary.items():
            ids = _parse_pair(name.removeprefix(prefix)) if name.startswith(prefix) else None
            if ids is not None:
                keys.append((ids[0] + 1) << 32 | (ids[1] + 1))
                columns.append(int(column))
        order = np.argsort(np.asarray(keys, dtype=np.int64), kind="stable")
        distance_column = vocabulary.get(DISTANCE)
        return cls(
            pair_keys=np.asarray(keys, dtype=np.int64)[order],
            pair_columns=np.asarray(columns, dtype=np.int64)[order],
            distance_column=None if distance_column is None else int(distance_column),
            n_columns=len(vectorizer.feature_names_),
        )

    def encode(self, pickup: np.ndarray, dropoff: np.ndarray) -> np.ndarray:
        """Each ride's one-hot column (int64) for its (pickup, dropoff) pair, -1 when unseen.

        Ids are integers, -1 for an unknown location; an id outside [-1, 2**31 - 1) is never
        part of a known pair.
        """
        pickup_ids, pickup_ok = _location_ids(pickup, "pickup")
        dropoff_ids, dropoff_ok = _location_ids(dropoff, "dropoff")
        if pickup_ids.shape != dropoff_ids.shape:
            raise ValueError(f"{len(pickup_ids)} pickups but {len(dropoff_ids)} dropoffs")
        if not len(self.pair_keys):
            return np.full(len(pickup_ids), -1, dtype=np.int64)
        keys = pair_key(pickup_ids, dropoff_ids)
        position = np.minimum(np.searchsorted(self.pair_keys, keys), len(self.pair_keys) - 1)
        known = pickup_ok & dropoff_ok & (self.pair_keys[position] == keys)
        return np.where(known, self.pair_columns[position], -1)

    def decode(self, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The pickup and dropoff ids of each pair column (the inverse of `encode`)."""
        columns = np.asarray(columns, dtype=np.int64)
        if not len(columns):
            return _key_ids(np.empty(0, dtype=np.int64))
        order = np.argsort(self.pair_columns)
        position = np.searchsorted(self.pair_columns[order], columns)
        position = np.minimum(position, max(len(order) - 1, 0))
        if not len(order) or np.any(self.pair_columns[order][position] != columns):
            raise ValueError("some columns are not pair columns of this vocabulary")
        return _key_ids(self.pair_keys[order[position]])

    def describe(self, column: int) -> str:
        """A pair column as a reader knows it: "PU_DO=43_151 (column 17)", or "an unseen pair"."""
        if column < 0:
            return "an unseen pair"
        pickup, dropoff = self.decode(np.array([column]))
        return f"{PU_DO}={pickup[0]}_{dropoff[0]} (column {column})"


@dataclass(frozen=True, eq=False)
class LookupTable:
    """The forest as a step function of a ride's pair class and distance interval.

    Class k + 1 is the pair column `pair_columns[k]` (sorted: the pair columns some split
    tests); class 0 is every other ride: known pairs that no split tests, and unseen pairs, all
    zeros to every tree. A ride's interval is the number of `cuts` (the sorted distinct
    distance thresholds) strictly below float32(distance). `values[class, interval]` is
    scikit-learn's own prediction there.
    """

    pair_columns: np.ndarray
    cuts: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        _check_array("table pair_columns", self.pair_columns, np.int64)
        _check_array("table cuts", self.cuts, np.float64)
        shape = (len(self.pair_columns) + 1, len(self.cuts) + 1)
        _check_array("table values", self.values, np.float64, ndim=2)
        if self.values.shape != shape:
            raise ValueError(f"table values have shape {self.values.shape}, not {shape}")
        if np.any(np.diff(self.pair_columns) <= 0) or np.any(np.diff(self.cuts) <= 0):
            raise ValueError("table pair_columns or cuts are not sorted and distinct")
        if not np.isfinite(self.cuts).all() or not np.isfinite(self.values).all():
            raise ValueError("table cuts or values are not finite")


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
        _check_array("feature", self.feature, np.int32)
        for name, dtype in (
            ("threshold", np.float64),
            ("left", np.int32),
            ("right", np.int32),
            ("value", np.float64),
        ):
            _check_array(name, getattr(self, name), dtype, n)
        _check_array("roots", self.roots, np.int32, self.n_estimators)
        if self.n_estimators < 1 or (not self.average and self.n_estimators != 1):
            raise ValueError(f"{self.n_estimators} trees, average={self.average}")
        self._levels  # noqa: B018 - computed here, it checks that the nodes form trees
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
    def split_pair_columns(self) -> np.ndarray:
        """The sorted distinct pair columns that some split tests."""
        tested = self.feature[self.feature >= 0]
        return np.unique(tested[tested != self._distance_code]).astype(np.int64)

    @property
    def distance_cuts(self) -> np.ndarray:
        """The sorted distinct distance thresholds (float64)."""
        return np.unique(self.threshold[self.feature == self._distance_code])

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
        internal = self.feature != _LEAF
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
        """The forest's depth, once the nodes are checked to form trees."""
        return _tree_levels(self.left, self.right, self.roots)

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
        if distance is None:
            raise ValueError(f"the model uses {DISTANCE}: give a distance for every ride")
        values = np.asarray(distance, dtype=np.float64)
        if values.shape != (n,):
            raise ValueError(f"{n} pair columns but distances of shape {values.shape}")
        with np.errstate(over="ignore", invalid="ignore"):
            x = values.astype(np.float32)  # the cast scikit-learn applies to X
        bad = ~np.isfinite(x)
        if bad.any():
            row = int(np.argmax(bad))
            raise ValueError(
                f"{int(bad.sum())} distance(s) are NaN, infinite or too large for float32, "
                f"which scikit-learn refuses (row {row}: {float(values[row])!r})"
            )
        return x.astype(np.float64)

    def _lookup(self, pairs: np.ndarray, x: np.ndarray | None) -> np.ndarray:
        if self.table is None:
            raise ValueError("this compiled forest has no lookup table: use method='walk'")
        classes = self._column_class[pairs + 1]
        interval = 0 if x is None else np.searchsorted(self.table.cuts, x, side="left")
        return self.table.values[classes, interval]

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
        internal = self.feature != _LEAF
        features = self.feature[internal]
        if len(features) and (features.min() < 0 or features.max() >= self.vocabulary.n_columns):
            raise ValueError("a node tests a column outside the vocabulary")
        is_distance = features == self._distance_code
        pair_features = features[~is_distance]
        known = np.isin(pair_features, self.vocabulary.pair_columns)
        if not known.all():
            raise ValueError(f"a node tests column {pair_features[~known][0]}, not a feature")
        thresholds = self.threshold[internal]
        if np.any(thresholds[~is_distance] != _ONE_HOT_THRESHOLD):
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


# --- compiling and verifying: these take a scikit-learn pipeline and import scikit-learn ---


def compile_pipeline(pipeline: Any) -> CompiledForest:
    """The CompiledForest of a fitted Pipeline(DictVectorizer, forest), with its lookup table.

    Accepts a single-output RandomForestRegressor (or a single DecisionTreeRegressor) after a
    sparse or dense DictVectorizer; anything else raises NotCompilableError saying why. The
    table takes scikit-learn's own predictions on every (pair class, interval): seconds for
    the real model.
    """
    vectorizer, regressor = _pipeline_steps(pipeline)
    vocabulary = PairVocabulary.from_dict_vectorizer(vectorizer)
    trees, average = _fitted_trees(regressor, vocabulary.n_columns)
    nodes = _node_arrays(trees, vocabulary, vectorizer.feature_names_)
    forest = CompiledForest(
        vocabulary=vocabulary, **nodes, n_estimators=len(trees), average=average
    )
    return replace(forest, table=_build_table(forest, _Reference(pipeline)))


@dataclass(frozen=True)
class Verification:
    """What `verify` compared with scikit-learn, bit for bit."""

    given_rows: int  # the rows passed in: walk and table
    grid_rows: int  # the probe grid: the table (the walk when there is no table)
    walk_grid_rows: int  # the part of the grid the walk also went through
    pair_classes: int  # pairs probed: split pairs, the unseen pair, a few unused ones
    thresholds: int  # distinct distance thresholds, each probed on both sides


def verify(
    compiled: CompiledForest,
    pipeline: Any,
    rows: Sequence[Mapping[str, Any]] = (),
    *,
    max_grid_rows: int = 2_500_000,
    max_walk_rows: int = 400_000,
    seed: int = 0,
) -> Verification:
    """Check the compiled forest against `pipeline` (n_jobs=1) bit for bit.

    Compared with scikit-learn: on `rows` (feature dicts, e.g. the training rows, through the
    pipeline itself), the walk and the table; on the probe grid (`probe_grid`: every pair
    class on both float32 sides of every distance threshold, and more), the table on all of
    it and the walk on up to `max_walk_rows` of it (the walk costs twice scikit-learn per
    row); without a table the walk takes the whole grid. A sample of the grid also goes
    through the DictVectorizer as dicts, proving that the grid's matrix is the vectorizer's.
    Raises CompiledMismatchError naming the first differing row.
    """
    reference = _Reference(pipeline)
    _check_same_vocabulary(compiled.vocabulary, reference.vocabulary)
    both: list[Method] = ["walk"] if compiled.table is None else ["walk", "table"]
    if len(rows):
        pairs, distance = encode_records(compiled.vocabulary, rows)
        expected = reference.predict_records(rows)
        _compare("given rows", compiled, both, pairs, distance, expected)
    grid = probe_grid(compiled, max_rows=max_grid_rows, max_walk_rows=max_walk_rows, seed=seed)
    expected = reference.predict_rows(grid.pairs, grid.distance)
    walk = np.ones(len(grid.pairs), dtype=bool)
    if compiled.table is not None:
        _compare("probe-grid rows", compiled, ["table"], grid.pairs, grid.distance, expected)
        walk = grid.walk
    walk_distance = None if grid.distance is None else grid.distance[walk]
    _compare("probe-grid rows", compiled, ["walk"], grid.pairs[walk], walk_distance, expected[walk])
    _check_grid_matrix(compiled.vocabulary, reference, grid, expected, seed)
    return Verification(
        given_rows=len(rows),
        grid_rows=len(grid.pairs),
        walk_grid_rows=int(walk.sum()),
        pair_classes=len(np.unique(grid.pairs)),
        thresholds=len(compiled.distance_cuts),
    )


def encode_records(
    vocabulary: PairVocabulary, records: Sequence[Mapping[str, Any]]
) -> tuple[np.ndarray, np.ndarray | None]:
    """The pair columns and distances of feature dicts, as the DictVectorizer reads them.

    A missing key is 0 to the vectorizer, so a ride without PU_DO has no pair column and one
    without trip_distance has distance 0; None is NaN. A PU_DO not written "<int>_<int>" and
    a distance that is not a number raise ValueError (the product never makes them).
    """
    pickup = np.full(len(records), MAX_ID, dtype=np.int64)  # MAX_ID: no pair
    dropoff = pickup.copy()
    distance = np.zeros(len(records), dtype=np.float64)
    for i, record in enumerate(records):
        if PU_DO in record:
            ids = _parse_pair(record[PU_DO]) if isinstance(record[PU_DO], str) else None
            if ids is None:
                raise ValueError(f"row {i}: {PU_DO} is {record[PU_DO]!r}, not '<int>_<int>'")
            pickup[i], dropoff[i] = ids
        value = record.get(DISTANCE, 0.0)
        if value is not None and (isinstance(value, bool) or not isinstance(value, Real)):
            raise ValueError(f"row {i}: {DISTANCE} is {value!r}, not a number")
        distance[i] = np.nan if value is None else float(value)
    pairs = vocabulary.encode(pickup, dropoff)
    return pairs, (None if vocabulary.distance_column is None else distance)


@dataclass(frozen=True, eq=False)
class ProbeGrid:
    """Probe rows (pair columns, distances) and which of them the walk goes through too."""

    pairs: np.ndarray
    distance: np.ndarray | None
    walk: np.ndarray


def probe_grid(
    compiled: CompiledForest,
    *,
    max_rows: int = 2_500_000,
    max_walk_rows: int = 400_000,
    seed: int = 0,
) -> ProbeGrid:
    """Probe rows around every decision the forest makes.

    Pairs: every pair column some split tests, the unseen pair, and up to 8 known pairs that
    no split tests. Distances ("sides"): for every threshold the float32 value at or just
    below it and the one just above it, plus 0, -1 and the largest and lowest float32.
    The unseen pair, 4 random split pairs and an unused pair ("the first pairs") get every
    side and its float32 neighbours; every other pair gets every side while the grid fits in
    `max_rows`, else a random sample of sides that always has 0, -1 and the extremes. The
    walk rows are the first pairs' rows plus a random sample of the others, `max_walk_rows`
    in all. Without a distance feature every pair is one row, all walked.
    """
    rng = np.random.default_rng(seed)
    split_pairs = compiled.split_pair_columns
    unused = np.setdiff1d(compiled.vocabulary.pair_columns, split_pairs)
    unused = rng.choice(unused, size=min(8, len(unused)), replace=False)
    first = np.concatenate(
        [[-1], rng.choice(split_pairs, size=min(4, len(split_pairs)), replace=False), unused[:1]]
    ).astype(np.int64)
    rest = np.setdiff1d(np.concatenate([split_pairs, unused]), first)
    if compiled.vocabulary.distance_column is None:
        pairs = np.concatenate([first, rest])
        return ProbeGrid(pairs=pairs, distance=None, walk=np.ones(len(pairs), dtype=bool))
    fixed = np.array([0.0, -1.0, _FLOAT32_MAX, -_FLOAT32_MAX])
    below = _round_down32(compiled.distance_cuts)
    sides = np.unique(np.concatenate([fixed, below, _next_up32(below)]))
    neighbours = np.concatenate([_next_down32(sides), sides, _next_up32(sides)])
    neighbours = np.unique(neighbours[np.isfinite(neighbours)])
    blocks = [(np.repeat(first, len(neighbours)), np.tile(neighbours, len(first)))]
    room = max(max_rows - len(blocks[0][0]), 0)
    per_pair = max(room // max(len(rest), 1), 4)
    for pair in rest:
        chosen = sides if per_pair >= len(sides) else _sample_sides(sides, fixed, per_pair, rng)
        blocks.append((np.full(len(chosen), pair, dtype=np.int64), chosen))
    pairs = np.concatenate([block[0] for block in blocks])
    walk = np.zeros(len(pairs), dtype=bool)
    walk[: len(blocks[0][0])] = True
    others = np.arange(len(blocks[0][0]), len(pairs))
    take = min(max(max_walk_rows - len(blocks[0][0]), 0), len(others))
    walk[rng.choice(others, size=take, replace=False)] = True
    return ProbeGrid(pairs=pairs, distance=np.concatenate([b[1] for b in blocks]), walk=walk)


def with_one_job(estimator: Any) -> Any:
    """`estimator` with n_jobs=1: itself, or a shallow copy sharing its fitted trees.

    With more jobs a forest adds its trees in an order that varies from run to run.
    """
    if getattr(estimator, "n_jobs", 1) == 1:
        return estimator
    single = copy.copy(estimator)
    single.n_jobs = 1
    return single


def vectorizer_rows(
    vocabulary: PairVocabulary, dtype: Any, pairs: np.ndarray, distance: np.ndarray | None
) -> Any:
    """The DictVectorizer's sparse rows of encoded rides: a 1 in the pair's column (none for
    an unseen pair, -1), the distance in its own column."""
    import scipy.sparse as sp

    n = len(pairs)
    entries_columns, entries_values = [pairs], [np.ones(n, dtype=dtype)]
    counts = (pairs >= 0).astype(np.int64)
    if distance is not None:
        entries_columns.append(np.full(n, vocabulary.distance_column, dtype=np.int64))
        entries_values.append(distance.astype(dtype, copy=False))
        counts += 1
    columns = np.column_stack(entries_columns).ravel()
    values = np.column_stack(entries_values).ravel()
    present = columns >= 0
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return sp.csr_matrix(
        (values[present], columns[present], indptr), shape=(n, vocabulary.n_columns)
    )


class _Reference:
    """scikit-learn's predictions with n_jobs=1, from a copy: the caller's model is untouched."""

    def __init__(self, pipeline: Any) -> None:
        vectorizer, regressor = _pipeline_steps(pipeline)
        regressor = with_one_job(regressor)
        self.pipeline = copy.copy(pipeline)
        self.pipeline.steps = [pipeline.steps[0], (pipeline.steps[-1][0], regressor)]
        self.vectorizer, self.regressor = vectorizer, regressor
        self.vocabulary = PairVocabulary.from_dict_vectorizer(vectorizer)

    def predict_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The pipeline's predictions for feature dicts."""
        out = [
            np.asarray(self.pipeline.predict(records[start : start + _REFERENCE_BLOCK]))
            for start in range(0, len(records), _REFERENCE_BLOCK)
        ]
        return np.concatenate(out).astype(np.float64, copy=False).reshape(-1)

    def predict_rows(self, pairs: np.ndarray, distance: np.ndarray | None) -> np.ndarray:
        """The forest's predictions for encoded rows, on the matrix the DictVectorizer makes."""
        dense = not self.vectorizer.sparse
        # A dense DictVectorizer hands the forest every column: keep those blocks small.
        block = max(1, (1 << 22) // max(self.vocabulary.n_columns, 1)) if dense else None
        block = block or _REFERENCE_BLOCK
        out = np.empty(len(pairs), dtype=np.float64)
        for start in range(0, len(pairs), block):
            rows = slice(start, start + block)
            matrix = self._matrix(pairs[rows], None if distance is None else distance[rows])
            # scikit-learn's quick finiteness test sums X: the float32 extremes overflow that
            # sum (a warning only), and it then checks the values one by one.
            with np.errstate(over="ignore", invalid="ignore"):
                predictions = self.regressor.predict(matrix.toarray() if dense else matrix)
            out[rows] = np.asarray(predictions)
        return out

    def _matrix(self, pairs: np.ndarray, distance: np.ndarray | None) -> Any:
        """The DictVectorizer's rows, their column indices sorted as the vectorizer sorts them."""
        matrix = vectorizer_rows(self.vocabulary, self.vectorizer.dtype, pairs, distance)
        matrix.sort_indices()
        return matrix


def _pipeline_steps(pipeline: Any) -> tuple[Any, Any]:
    """The fitted DictVectorizer and regressor of the pipeline, or NotCompilableError."""
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.pipeline import Pipeline

    if not isinstance(pipeline, Pipeline):
        raise NotCompilableError(
            f"the model is a {type(pipeline).__name__}, not Pipeline(DictVectorizer, forest)"
        )
    if len(pipeline.steps) != 2:
        names = ", ".join(type(step).__name__ for _, step in pipeline.steps)
        raise NotCompilableError(
            f"the pipeline has {len(pipeline.steps)} steps ({names}), not DictVectorizer + forest"
        )
    vectorizer, regressor = (step for _, step in pipeline.steps)
    if type(vectorizer) is not DictVectorizer:
        raise NotCompilableError(
            f"the pipeline's first step is {type(vectorizer).__name__}, not a DictVectorizer"
        )
    if type(regressor) not in _regressor_types():
        raise NotCompilableError(
            f"the model's last step is {type(regressor).__name__}, not a random forest"
        )
    if not hasattr(vectorizer, "vocabulary_"):
        raise NotCompilableError("the DictVectorizer is not fitted")
    if np.dtype(vectorizer.dtype) not in (np.float32, np.float64):
        raise NotCompilableError(
            f"the DictVectorizer's dtype is {np.dtype(vectorizer.dtype)}: it rounds distances "
            "before the forest's float32 cast"
        )
    return vectorizer, regressor


def _regressor_types() -> tuple[type, ...]:
    # Not the extremely randomized trees: their one-hot thresholds are anywhere in (0, 1).
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.tree import DecisionTreeRegressor

    return RandomForestRegressor, DecisionTreeRegressor


def _fitted_trees(regressor: Any, n_columns: int) -> tuple[list[Any], bool]:
    """The sklearn Tree objects in estimator order, and whether their outputs are averaged."""
    from sklearn.tree import DecisionTreeRegressor

    is_forest = type(regressor) is not DecisionTreeRegressor
    estimators = getattr(regressor, "estimators_", None) if is_forest else [regressor]
    if not estimators or not all(hasattr(estimator, "tree_") for estimator in estimators):
        raise NotCompilableError(f"the {type(regressor).__name__} is not fitted")
    if regressor.n_outputs_ != 1:
        raise NotCompilableError(
            f"the forest is multi-output ({regressor.n_outputs_} outputs), not single-output"
        )
    if regressor.n_features_in_ != n_columns:
        raise NotCompilableError(
            f"the forest expects {regressor.n_features_in_} columns, the DictVectorizer "
            f"makes {n_columns}"
        )
    for i, estimator in enumerate(estimators):
        if type(estimator) is not DecisionTreeRegressor:
            raise NotCompilableError(f"tree {i} is a {type(estimator).__name__}")
    return [estimator.tree_ for estimator in estimators], is_forest


def _node_arrays(
    trees: list[Any], vocabulary: PairVocabulary, names: list[str]
) -> dict[str, np.ndarray]:
    """The trees' nodes concatenated, after checking every assumption the evaluators make."""
    parts: dict[str, list[np.ndarray]] = {
        key: [] for key in ("feature", "threshold", "left", "right", "value")
    }
    roots, base = [], 0
    pair_columns = set(vocabulary.pair_columns.tolist())
    for i, tree in enumerate(trees):
        n = tree.node_count
        if tree.value.shape != (n, 1, 1):
            raise NotCompilableError(
                f"tree {i}'s values have shape {tree.value.shape}, not ({n}, 1, 1)"
            )
        left, right = tree.children_left, tree.children_right
        leaf = left == _LEAF
        if np.any((right == _LEAF) != leaf):
            raise NotCompilableError(f"tree {i} has a node with one child")
        _check_tree_splits(i, tree, ~leaf, vocabulary, pair_columns, names)
        if not np.isfinite(tree.value[leaf, 0, 0]).all():
            raise NotCompilableError(f"tree {i} has a leaf value that is not finite")
        parts["feature"].append(np.where(leaf, _LEAF, tree.feature))
        parts["threshold"].append(np.where(leaf, 0.0, tree.threshold))
        parts["left"].append(np.where(leaf, _LEAF, left + base))
        parts["right"].append(np.where(leaf, _LEAF, right + base))
        parts["value"].append(tree.value[:, 0, 0])
        roots.append(base)
        base += n
    if base > _INT32_MAX:
        raise NotCompilableError(f"the forest has {base} nodes, more than int32 indexes")
    arrays = {key: np.concatenate(values) for key, values in parts.items()}
    for key in ("feature", "left", "right"):
        arrays[key] = arrays[key].astype(np.int32)
    arrays["roots"] = np.asarray(roots, dtype=np.int32)
    return arrays


def _check_tree_splits(
    i: int,
    tree: Any,
    internal: np.ndarray,
    vocabulary: PairVocabulary,
    pair_columns: set[int],
    names: list[str],
) -> None:
    for column in np.unique(tree.feature[internal]).tolist():
        at = internal & (tree.feature == column)
        thresholds = tree.threshold[at]
        if column == vocabulary.distance_column:
            infinite = ~np.isfinite(thresholds)
            if infinite.any():
                raise NotCompilableError(
                    f"tree {i} splits {DISTANCE} at {float(thresholds[infinite][0])}: it routes "
                    "missing values, which the product never passes"
                )
        elif column in pair_columns:
            wrong = thresholds != _ONE_HOT_THRESHOLD
            if wrong.any():
                raise NotCompilableError(
                    f"a split on one-hot column {names[column]} has threshold "
                    f"{float(thresholds[wrong][0])!r}, not 0.5"
                )
        else:
            raise NotCompilableError(
                f"tree {i} splits on column {names[column]!r}, which the product's features "
                "never produce"
            )


def _build_table(forest: CompiledForest, reference: _Reference) -> LookupTable:
    """scikit-learn's prediction at one float32 point inside every (pair class, interval)."""
    split_pairs = forest.split_pair_columns
    cuts = forest.distance_cuts
    classes = np.concatenate([[-1], split_pairs])  # class 0: the unseen pair, all zeros
    points = _interval_points(cuts)
    distance = None if forest.vocabulary.distance_column is None else np.tile(points, len(classes))
    values = reference.predict_rows(np.repeat(classes, len(points)), distance)
    return LookupTable(
        pair_columns=split_pairs, cuts=cuts, values=values.reshape(len(classes), len(points))
    )


def _interval_points(cuts: np.ndarray) -> np.ndarray:
    """One float32 value (as float64) inside each interval of the sorted cuts.

    Interval i holds x with cuts[i - 1] < x <= cuts[i]; its point is the largest float32 <=
    cuts[i] (the last interval: the smallest float32 above the last cut). Some intervals hold
    no float32 at all (two cuts between the same two float32 neighbours): no ride ever maps
    to them, since a ride's interval comes from its float32 distance, and their point is
    then the first float32 above cuts[i - 1], which lies in a later interval: a harmless value.
    """
    if not len(cuts):
        return np.zeros(1)
    upper = _round_down32(cuts)
    above = _next_up32(upper)  # the smallest float32 above each cut
    points = np.concatenate([upper[:1], np.maximum(upper[1:], above[:-1]), above[-1:]])
    return np.minimum(points, _FLOAT32_MAX)


def _compare(
    label: str,
    compiled: CompiledForest,
    methods: list[Method],
    pairs: np.ndarray,
    distance: np.ndarray | None,
    expected: np.ndarray,
) -> None:
    """Raise CompiledMismatchError unless each method gives `expected`'s exact bits."""
    for method in methods:
        got = compiled.predict(pairs, distance, method=method)
        if np.array_equal(got, expected) and got.tobytes() == expected.tobytes():
            continue
        differ = got.view(np.int64) != expected.view(np.int64)
        row = int(np.argmax(differ))
        where = compiled.vocabulary.describe(int(pairs[row]))
        if distance is not None:
            where += f", distance {float(distance[row])!r}"
        raise CompiledMismatchError(
            f"the {method} differs from scikit-learn on {int(differ.sum())} of {len(got)} {label}; "
            f"the first: {where}: scikit-learn {float(expected[row])!r}, "
            f"compiled {float(got[row])!r}"
        )


def _check_grid_matrix(
    vocabulary: PairVocabulary,
    reference: _Reference,
    grid: ProbeGrid,
    expected: np.ndarray,
    seed: int,
    size: int = 2_000,
) -> None:
    """The grid was predicted on a matrix built here: the DictVectorizer must agree on it."""
    sample = np.random.default_rng(seed).choice(len(grid.pairs), size=min(size, len(grid.pairs)))
    pairs = grid.pairs[sample]
    known = pairs >= 0
    pickup = np.zeros(len(sample), dtype=np.int64)
    dropoff = pickup.copy()
    pickup[known], dropoff[known] = vocabulary.decode(pairs[known])
    records: list[dict[str, Any]] = []
    for i, is_known in enumerate(known.tolist()):
        # An unseen pair is all zeros, as is a ride without the key.
        record: dict[str, Any] = {PU_DO: f"{pickup[i]}_{dropoff[i]}"} if is_known else {}
        if grid.distance is not None:
            record[DISTANCE] = float(grid.distance[sample[i]])
        records.append(record)
    got = reference.predict_records(records)
    if got.tobytes() != expected[sample].tobytes():
        raise CompiledMismatchError(
            "the probe grid's matrix differs from the DictVectorizer's on "
            f"{int(np.sum(got != expected[sample]))} of {len(sample)} sampled rows"
        )


def _check_same_vocabulary(compiled: PairVocabulary, model: PairVocabulary) -> None:
    same = (
        np.array_equal(compiled.pair_keys, model.pair_keys)
        and np.array_equal(compiled.pair_columns, model.pair_columns)
        and compiled.distance_column == model.distance_column
        and compiled.n_columns == model.n_columns
    )
    if not same:
        raise CompiledMismatchError("the compiled vocabulary is not the model's DictVectorizer's")


def _sample_sides(
    sides: np.ndarray, fixed: np.ndarray, size: int, rng: np.random.Generator
) -> np.ndarray:
    return np.union1d(fixed, rng.choice(sides, size=min(size, len(sides)), replace=False))


# --- saving and loading: plain arrays in one .npz, no pickle ---


def save(compiled: CompiledForest, path: str | os.PathLike[str]) -> Path:
    """Write the compiled forest as one .npz (a directory gets forest.npz); the path written.

    The file holds plain arrays, ints narrowed to int32, and a small JSON metadata array;
    it is written beside the target and renamed into place, so it appears only complete.
    """
    target = Path(path)
    if target.is_dir():
        target = target / FILE_NAME
    vocabulary = compiled.vocabulary
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "n_columns": vocabulary.n_columns,
        "distance_column": vocabulary.distance_column,
        "n_estimators": compiled.n_estimators,
        "average": compiled.average,
        "table": compiled.table is not None,
    }
    arrays = {
        "metadata": np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8),
        "pair_keys": vocabulary.pair_keys,
        "pair_columns": vocabulary.pair_columns.astype(np.int32),  # < n_columns < 2**31
        **{name: getattr(compiled, name) for name in _NODE_DTYPES},
    }
    if compiled.table is not None:
        arrays["table_pair_columns"] = compiled.table.pair_columns.astype(np.int32)
        arrays["table_cuts"] = compiled.table.cuts
        arrays["table_values"] = compiled.table.values
    staged = target.with_name(f".{target.name}.tmp")
    try:
        with staged.open("wb") as file:
            np.savez(file, **arrays)
        staged.replace(target)
    finally:
        staged.unlink(missing_ok=True)  # only left when writing failed
    return target


def load(path: str | os.PathLike[str]) -> CompiledForest:
    """The compiled forest saved in the file `path`.

    Raises ValueError, naming the file, when it is not a compiled forest of this format
    version: unreadable, pickled, missing or extra arrays, wrong dtypes or inconsistent trees.
    """
    target = Path(path)
    try:
        arrays = _read_npz(target)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise ValueError(f"{target} is not a compiled forest: {error}") from error
    try:
        return _from_arrays(arrays)
    except (ValueError, TypeError, KeyError) as error:
        raise ValueError(f"{target} is not a valid compiled forest: {error}") from error


_NODE_DTYPES = {
    "feature": np.int32,
    "threshold": np.float64,
    "left": np.int32,
    "right": np.int32,
    "value": np.float64,
    "roots": np.int32,
}
_TABLE_DTYPES = {
    "table_pair_columns": np.int32,
    "table_cuts": np.float64,
    "table_values": np.float64,
}


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    loaded = np.load(path, allow_pickle=False)  # a pickled file raises ValueError
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError("it holds a single array, not an .npz archive")
    with loaded:
        return {name: loaded[name] for name in loaded.files}


def _from_arrays(arrays: dict[str, np.ndarray]) -> CompiledForest:
    metadata = _metadata(arrays.get("metadata"))
    dtypes = {"metadata": np.uint8, "pair_keys": np.int64, "pair_columns": np.int32}
    dtypes |= _NODE_DTYPES | (_TABLE_DTYPES if metadata["table"] else {})
    if set(arrays) != set(dtypes):
        raise ValueError(f"arrays {sorted(arrays)}, expected {sorted(dtypes)}")
    for name, dtype in dtypes.items():
        if arrays[name].dtype != dtype:
            raise ValueError(f"{name} is {arrays[name].dtype}, not {np.dtype(dtype)}")
    vocabulary = PairVocabulary(
        pair_keys=arrays["pair_keys"],
        pair_columns=arrays["pair_columns"].astype(np.int64),
        distance_column=metadata["distance_column"],
        n_columns=metadata["n_columns"],
    )
    table = None
    if metadata["table"]:
        table = LookupTable(
            pair_columns=arrays["table_pair_columns"].astype(np.int64),
            cuts=arrays["table_cuts"],
            values=arrays["table_values"],
        )
    return CompiledForest(
        vocabulary=vocabulary,
        **{name: arrays[name] for name in _NODE_DTYPES},
        n_estimators=metadata["n_estimators"],
        average=metadata["average"],
        table=table,
    )


def _metadata(array: np.ndarray | None) -> dict[str, Any]:
    if array is None or array.dtype != np.uint8 or array.ndim != 1:
        raise ValueError("no metadata array")
    metadata = json.loads(array.tobytes().decode())
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ValueError(f"metadata does not name the format {FORMAT!r}")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"format version {metadata.get('format_version')!r}, this code reads {FORMAT_VERSION}"
        )
    types = {
        "n_columns": int,
        "distance_column": (int, type(None)),
        "n_estimators": int,
        "average": bool,
        "table": bool,
    }
    for key, kind in types.items():
        value = metadata.get(key)
        # bool is an int to isinstance: a count that is true or false is as foreign as none
        if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
            raise ValueError(f"metadata {key} is {value!r}")
    return metadata


# --- small helpers ---


def _round_down32(x: np.ndarray) -> np.ndarray:
    """The largest float32 <= each x, as float64."""
    with np.errstate(over="ignore"):
        nearest = x.astype(np.float32)
    above = nearest.astype(np.float64) > x
    nearest[above] = np.nextafter(nearest[above], np.float32(-np.inf))
    return nearest.astype(np.float64)


def _next_up32(x: np.ndarray) -> np.ndarray:
    """The smallest float32 > each x (x a float32 value held as float64; inf past the max)."""
    with np.errstate(over="ignore"):
        return np.nextafter(x.astype(np.float32), np.float32(np.inf)).astype(np.float64)


def _next_down32(x: np.ndarray) -> np.ndarray:
    """The largest float32 < each x (x a float32 value held as float64; -inf past the min)."""
    with np.errstate(over="ignore"):
        return np.nextafter(x.astype(np.float32), np.float32(-np.inf)).astype(np.float64)


def _tree_levels(left: np.ndarray, right: np.ndarray, roots: np.ndarray) -> int:
    """The forest's depth, after checking that the nodes form trees starting at `roots`.

    Each tree's nodes are the range from its root to the next root; a node's children lie
    after it in its own tree, and every node is reached from its root exactly once.
    """
    n = len(left)
    if not len(roots) or roots[0] != 0 or np.any(np.diff(roots) <= 0) or roots[-1] >= n:
        raise ValueError("roots do not start trees in order")
    ends = np.append(roots[1:], n)[np.searchsorted(roots, np.arange(n), side="right") - 1]
    index = np.arange(n)
    internal = left != _LEAF
    for children in (left, right):
        inside = (children > index) & (children < ends)
        if np.any(internal & ~inside) or np.any(~internal & (children != _LEAF)):
            raise ValueError("a node's child is outside its tree or before it")
    seen = np.zeros(n, dtype=np.int64)
    frontier, levels = roots.astype(np.intp), 0
    while True:
        np.add.at(seen, frontier, 1)  # a node reached twice in one level counts twice
        frontier = frontier[internal[frontier]]
        if not len(frontier):
            break
        frontier = np.concatenate([left[frontier], right[frontier]]).astype(np.intp)
        levels += 1
    if np.any(seen != 1):
        raise ValueError("some nodes are not reached exactly once from their tree's root")
    return levels


def _check_array(
    name: str, array: Any, dtype: type, length: int | None = None, ndim: int = 1
) -> None:
    if not isinstance(array, np.ndarray) or array.dtype != dtype or array.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-d {np.dtype(dtype)} array")
    if length is not None and len(array) != length:
        raise ValueError(f"{name} has {len(array)} entries, not {length}")


def _parse_pair(text: str) -> tuple[int, int] | None:
    """(pickup, dropoff) of "<pickup>_<dropoff>" exactly as the features write it, else None."""
    pickup, separator, dropoff = text.partition("_")
    try:
        ids = int(pickup), int(dropoff)
    except ValueError:
        return None
    # int() also reads "+5", " 5" and "1_0": only the features' own spelling names a pair.
    if not separator or f"{ids[0]}_{ids[1]}" != text or not all(_valid_ids(np.array(ids))):
        return None
    return ids


def _valid_ids(ids: np.ndarray) -> np.ndarray:
    return (ids >= UNKNOWN_LOCATION) & (ids < MAX_ID)


def _key_ids(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (keys >> 32) - 1, (keys & 0xFFFFFFFF) - 1


def _location_ids(values: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Ids as int64 (0 where invalid) and which are valid, without wrapping huge unsigned ids."""
    ids = np.asarray(values)
    if ids.ndim != 1 or ids.dtype.kind not in "iu":
        raise TypeError(f"{name} ids must be a 1-d integer array, got {ids.dtype}")
    valid = ids < MAX_ID if ids.dtype.kind == "u" else _valid_ids(ids)
    return np.where(valid, ids, 0).astype(np.int64), valid
