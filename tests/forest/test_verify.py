"""Verifying a compiled forest against scikit-learn (`forest.verify`), and refusing tampering."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

from ride_duration.forest import errors, verify
from tests.support.forests import FLOAT32_MAX, MODELS, float32_below, float32_step, records


@pytest.mark.parametrize("name", list(MODELS))
def test_verify_passes_on_every_model(name, compiled, pipelines, train_rides):
    rows = records(*train_rides, MODELS[name][1])
    report = verify.verify(compiled[name], pipelines[name], rows)
    assert report.given_rows == len(rows)
    assert report.grid_rows >= report.pair_classes
    assert pipelines[name][-1].get_params().get("n_jobs") in (-1, None), "the caller's model"


def test_the_probe_grid_covers_both_sides_of_every_threshold(compiled):
    model = compiled["forest"]
    grid = verify.probe_grid(model)
    below = float32_below(model.distance_cuts)
    sides = np.concatenate([below, float32_step(below, np.inf), [0.0, -1.0, FLOAT32_MAX]])
    for pair in [-1, *model.split_pair_columns.tolist()]:
        assert np.all(np.isin(sides, grid.distance[grid.pairs == pair])), pair
    assert grid.walk.all()  # a small model's grid is walked whole


def test_a_capped_probe_grid_keeps_every_threshold_for_the_first_pairs(compiled):
    model = compiled["forest"]
    grid = verify.probe_grid(model, max_rows=20_000, max_walk_rows=8_000)
    below = float32_below(model.distance_cuts)
    counts = {pair: np.sum(grid.pairs == pair) for pair in np.unique(grid.pairs).tolist()}
    full = [pair for pair, count in counts.items() if count >= 3 * len(below)]
    assert -1 in full
    assert len(full) >= 5
    for pair in counts:
        assert np.all(np.isin([0.0, FLOAT32_MAX], grid.distance[grid.pairs == pair]))
    assert len(counts) == len(model.split_pair_columns) + 1 + 8
    assert grid.walk.sum() <= max(8_000, sum(counts[pair] for pair in full))


def tampered(tamper: str, model, pipeline, train_rides):
    """`model` with one thing changed, that the first training ride sees."""
    pickup, dropoff, distance = (column[:1] for column in train_rides)
    if tamper == "leaf value":
        first = pipeline[0].transform(records(pickup, dropoff, distance))
        leaf = pipeline[-1].estimators_[0].apply(first)[0]  # tree 0 starts at node 0
        value = model.value.copy()
        value[leaf] += 0.5
        return replace(model, value=value)
    if tamper == "distance threshold":
        threshold = model.threshold.copy()
        node = np.flatnonzero(model.feature == model.vocabulary.distance_column)[0]
        threshold[node] += 1.0
        return replace(model, threshold=threshold, table=None)
    if tamper == "table value":
        pair = model.vocabulary.encode(pickup, dropoff)[0]
        table = model.table
        row = np.searchsorted(table.pair_columns, pair) + 1 if pair in table.pair_columns else 0
        values = table.values.copy()
        values[row, np.searchsorted(table.cuts, np.float32(distance[0]))] += 1.0
        return replace(model, table=replace(table, values=values))
    vocabulary = model.vocabulary
    columns = vocabulary.pair_columns.copy()
    columns[[0, 1]] = columns[[1, 0]]
    return replace(model, vocabulary=replace(vocabulary, pair_columns=columns))


@pytest.mark.parametrize(
    ("tamper", "with_rows", "message"),
    [
        ("leaf value", True, r"the walk differs from scikit-learn on \d+ of 3000 given rows; the"),
        ("leaf value", False, r"the walk differs from scikit-learn on \d+ of \d+ probe-grid rows"),
        ("distance threshold", True, r"the walk differs .* on \d+ of 3000 given rows"),
        ("distance threshold", False, r"the walk differs .* on \d+ of \d+ probe-grid rows"),
        ("table value", True, r"the table differs .* on \d+ of 3000 given rows"),
        ("table value", False, r"the table differs .* on [1-9]\d* of \d+ probe-grid rows"),
        ("vocabulary", False, "the compiled vocabulary is not the model's"),
    ],
)
def test_verify_refuses_a_tampered_compiled_forest(
    tamper, with_rows, message, compiled, pipelines, train_rides
):
    pipeline = pipelines["forest"]
    model = tampered(tamper, compiled["forest"], pipeline, train_rides)
    rows = records(*train_rides) if with_rows else []
    with pytest.raises(errors.CompiledMismatchError, match=message) as error:
        verify.verify(model, pipeline, rows)
    if tamper != "vocabulary":
        assert re.search(
            r"the first: (PU_DO=-?\d+_-?\d+ \(column \d+\)|an unseen pair), "
            r"distance [-\d.e+]+: scikit-learn [-\d.e+]+, compiled [-\d.e+]+$",
            str(error.value),
        )


def test_verify_a_forest_without_its_table(compiled, pipelines, train_rides):
    model = replace(compiled["forest"], table=None)
    report = verify.verify(model, pipelines["forest"], records(*train_rides))
    assert report.walk_grid_rows == report.grid_rows > 100_000
    assert report.thresholds == len(model.distance_cuts)
