"""A compiled forest checked against scikit-learn bit for bit.

On given rows, and on a probe grid: every pair class on both float32 sides of every distance
threshold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ride_duration.forest.arrays import FLOAT32_MAX, next_down32, next_up32, round_down32
from ride_duration.forest.compiled import CompiledForest, Method
from ride_duration.forest.errors import CompiledMismatchError
from ride_duration.forest.reference import Reference
from ride_duration.forest.vocabulary import DISTANCE, PU_DO, PairVocabulary, encode_records


@dataclass(frozen=True)
class Verification:
    """What `verify` compared with scikit-learn, bit for bit."""

    given_rows: int  # the rows passed in: walk and table
    grid_rows: int  # the probe grid: the table (the walk when there is no table)
    walk_grid_rows: int  # the part of the grid the walk also went through
    pair_classes: int  # pairs probed: split pairs, the unseen pair, a few unused ones
    thresholds: int  # distinct distance thresholds, each probed on both sides

    def describe(self) -> str:
        """One line on what was checked."""
        return (
            f"bit for bit equal to scikit-learn (n_jobs=1) on {self.given_rows:,} training rows "
            f"and {self.grid_rows:,} rows around its {self.thresholds:,} distance thresholds"
        )


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
    reference = Reference(pipeline)
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
    fixed = np.array([0.0, -1.0, FLOAT32_MAX, -FLOAT32_MAX])
    below = round_down32(compiled.distance_cuts)
    sides = np.unique(np.concatenate([fixed, below, next_up32(below)]))
    neighbours = np.concatenate([next_down32(sides), sides, next_up32(sides)])
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
    reference: Reference,
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
