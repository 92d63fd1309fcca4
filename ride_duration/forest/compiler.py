"""A fitted Pipeline(DictVectorizer, RandomForestRegressor) turned into a CompiledForest.

scikit-learn is imported only inside these functions: loading and predicting need numpy alone.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, TypedDict

import numpy as np

from ride_duration.forest.arrays import FLOAT32_MAX, next_up32, round_down32
from ride_duration.forest.compiled import LEAF, ONE_HOT_THRESHOLD, CompiledForest
from ride_duration.forest.errors import NotCompilableError
from ride_duration.forest.reference import Reference, pipeline_steps
from ride_duration.forest.table import LookupTable
from ride_duration.forest.vocabulary import DISTANCE, INT32_MAX, PairVocabulary


class NodeArrays(TypedDict):
    """The trees' nodes, concatenated: CompiledForest's arrays of the same names."""

    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray
    roots: np.ndarray


def compile_pipeline(pipeline: Any) -> CompiledForest:
    """The CompiledForest of a fitted Pipeline(DictVectorizer, forest), with its lookup table.

    Accepts a single-output RandomForestRegressor (or a single DecisionTreeRegressor) after a
    sparse or dense DictVectorizer; anything else raises NotCompilableError saying why. The
    table takes scikit-learn's own predictions on every (pair class, interval): seconds for
    the real model.
    """
    vectorizer, regressor = pipeline_steps(pipeline)
    vocabulary = PairVocabulary.from_dict_vectorizer(vectorizer)
    trees, average = _fitted_trees(regressor, vocabulary.n_columns)
    nodes = _node_arrays(trees, vocabulary, vectorizer.feature_names_)
    forest = CompiledForest(
        vocabulary=vocabulary, **nodes, n_estimators=len(trees), average=average
    )
    return replace(forest, table=_build_table(forest, Reference(pipeline)))


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


def _node_arrays(trees: list[Any], vocabulary: PairVocabulary, names: list[str]) -> NodeArrays:
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
        leaf = left == LEAF
        if np.any((right == LEAF) != leaf):
            raise NotCompilableError(f"tree {i} has a node with one child")
        _check_tree_splits(i, tree, ~leaf, vocabulary, pair_columns, names)
        if not np.isfinite(tree.value[leaf, 0, 0]).all():
            raise NotCompilableError(f"tree {i} has a leaf value that is not finite")
        parts["feature"].append(np.where(leaf, LEAF, tree.feature))
        parts["threshold"].append(np.where(leaf, 0.0, tree.threshold))
        parts["left"].append(np.where(leaf, LEAF, left + base))
        parts["right"].append(np.where(leaf, LEAF, right + base))
        parts["value"].append(tree.value[:, 0, 0])
        roots.append(base)
        base += n
    if base > INT32_MAX:
        raise NotCompilableError(f"the forest has {base} nodes, more than int32 indexes")
    arrays = {key: np.concatenate(values) for key, values in parts.items()}
    return NodeArrays(
        feature=arrays["feature"].astype(np.int32),
        threshold=arrays["threshold"],
        left=arrays["left"].astype(np.int32),
        right=arrays["right"].astype(np.int32),
        value=arrays["value"],
        roots=np.asarray(roots, dtype=np.int32),
    )


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
            wrong = thresholds != ONE_HOT_THRESHOLD
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


def _build_table(forest: CompiledForest, reference: Reference) -> LookupTable:
    """scikit-learn's prediction at one float32 point inside every (pair class, interval)."""
    split_pairs = forest.split_pair_columns
    cuts = forest.distance_cuts
    classes = np.concatenate([[-1], split_pairs])  # class 0: the unseen pair, all zeros
    points = interval_points(cuts)
    distance = None if forest.vocabulary.distance_column is None else np.tile(points, len(classes))
    values = reference.predict_rows(np.repeat(classes, len(points)), distance)
    return LookupTable(
        pair_columns=split_pairs, cuts=cuts, values=values.reshape(len(classes), len(points))
    )


def interval_points(cuts: np.ndarray) -> np.ndarray:
    """One float32 value (as float64) inside each interval of the sorted cuts.

    Interval i holds x with cuts[i - 1] < x <= cuts[i]; its point is the largest float32 <=
    cuts[i] (the last interval: the smallest float32 above the last cut). Some intervals hold
    no float32 at all (two cuts between the same two float32 neighbours): no ride ever maps
    to them, since a ride's interval comes from its float32 distance, and their point is
    then the first float32 above cuts[i - 1], which lies in a later interval: a harmless value.
    """
    if not len(cuts):
        return np.zeros(1)
    upper = round_down32(cuts)
    above = next_up32(upper)  # the smallest float32 above each cut
    points = np.concatenate([upper[:1], np.maximum(upper[1:], above[:-1]), above[-1:]])
    inside: np.ndarray = np.minimum(points, FLOAT32_MAX)
    return inside
