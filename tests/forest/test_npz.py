"""A compiled forest as one .npz file (`forest.npz`): round trips, refuses what is not one."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ride_duration.forest import npz
from tests.conftest import REPO
from tests.support.forests import METHODS, MODELS, assert_same_bits, predict_both


@pytest.mark.parametrize("name", list(MODELS))
def test_save_and_load_round_trip(name, compiled, score_rides, tmp_path):
    model = compiled[name]
    path = npz.save(model, tmp_path)
    assert path == tmp_path / npz.FILE_NAME
    with np.load(path, allow_pickle=False) as archive:
        assert all(archive[key].dtype != object for key in archive.files)
        assert archive["feature"].dtype == archive["pair_columns"].dtype == np.int32
    loaded = npz.load(path)
    for field in ("feature", "threshold", "left", "right", "value", "roots"):
        np.testing.assert_array_equal(getattr(loaded, field), getattr(model, field))
        assert getattr(loaded, field).dtype == getattr(model, field).dtype
    np.testing.assert_array_equal(loaded.vocabulary.pair_keys, model.vocabulary.pair_keys)
    np.testing.assert_array_equal(loaded.table.values, model.table.values)
    pickup, dropoff, distance = score_rides
    for method in METHODS:
        expected = predict_both(model, pickup, dropoff, distance, method)
        assert_same_bits(predict_both(loaded, pickup, dropoff, distance, method), expected)


def test_a_forest_without_its_table_round_trips(compiled, tmp_path):
    model = replace(compiled["forest"], table=None)
    loaded = npz.load(npz.save(model, tmp_path / "walk-only.npz"))
    assert loaded.table is None
    assert loaded.n_estimators == model.n_estimators == 12


def rewrite(path: Path, change) -> None:
    with np.load(path, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    change(arrays)
    with path.open("wb") as file:
        np.savez(file, **arrays)


def metadata_with(**changes):
    def change(arrays):
        metadata = json.loads(arrays["metadata"].tobytes()) | changes
        arrays["metadata"] = np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)

    return change


def child_before_parent(arrays):
    node = int(np.flatnonzero(arrays["left"] >= 0)[1])
    arrays["left"] = arrays["left"].copy()
    arrays["left"][node] = 0


CORRUPTIONS = {
    "truncated": (
        lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]),
        "is not a compiled forest",
    ),
    "not an npz": (lambda path: path.write_bytes(b"hello " * 100), "is not a compiled forest"),
    "pickled object array": (
        lambda path: np.save(path.open("wb"), np.array([{}], dtype=object), allow_pickle=True),
        "is not a compiled forest",
    ),
    "a single array": (
        lambda path: np.save(path.open("wb"), np.arange(3)),
        "a single array, not an .npz archive",
    ),
    "foreign npz": (lambda path: np.savez(path, x=np.arange(3)), "no metadata array"),
    "format version 2": (
        lambda path: rewrite(path, metadata_with(format_version=2)),
        "format version 2, this code reads 1",
    ),
    "another format": (
        lambda path: rewrite(path, metadata_with(format="something")),
        "does not name the format",
    ),
    "wrong dtype": (
        lambda path: rewrite(path, lambda a: a.update(feature=a["feature"].astype(np.int64))),
        "feature is int64, not int32",
    ),
    "missing array": (lambda path: rewrite(path, lambda a: a.pop("value")), "expected"),
    "child before parent": (
        lambda path: rewrite(path, child_before_parent),
        "child is outside its tree or before it",
    ),
    "table of another forest": (
        lambda path: rewrite(path, lambda a: a.update(table_cuts=a["table_cuts"] + 1.0)),
        "cuts are not the trees' distance thresholds",
    ),
    "n_estimators as a bool": (
        lambda path: rewrite(path, metadata_with(n_estimators=True)),
        "metadata n_estimators is True",
    ),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_a_corrupt_or_foreign_file_is_refused(corruption, compiled, tmp_path):
    path = npz.save(compiled["forest"], tmp_path / "forest.npz")
    corrupt, match = CORRUPTIONS[corruption]
    corrupt(path)
    with pytest.raises(ValueError, match=match) as error:
        npz.load(path)
    assert str(path) in str(error.value)


def test_loading_and_predicting_import_no_sklearn(compiled, tmp_path):
    path = npz.save(compiled["forest"], tmp_path)
    code = f"""
import sys
import numpy as np
from ride_duration.forest import npz
model = npz.load({str(path)!r})
pairs = model.vocabulary.encode(np.array([3, 20]), np.array([4, 20]))
print(model.predict(pairs, np.array([2.5, 0.0])).tobytes().hex())
print(model.predict(pairs, np.array([2.5, 0.0]), method="walk").tobytes().hex())
heavy = ("sklearn", "scipy", "pandas", "pyarrow", "mlflow")
assert not any(m.startswith(heavy) for m in sys.modules), sorted(sys.modules)
"""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    model = compiled["forest"]
    expected = predict_both(
        model, np.array([3, 20]), np.array([4, 20]), np.array([2.5, 0.0]), "auto"
    )
    assert done.stdout.split() == [expected.tobytes().hex()] * 2


def test_a_forest_file_names_its_kind_and_one_written_before_kinds_still_loads(compiled, tmp_path):
    path = npz.save(compiled["forest"], tmp_path)
    with np.load(path, allow_pickle=False) as archive:
        assert json.loads(archive["metadata"].tobytes())["kind"] == "forest"

    def without_kind(arrays):
        metadata = json.loads(arrays["metadata"].tobytes())
        del metadata["kind"]
        arrays["metadata"] = np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)

    rewrite(path, without_kind)
    assert npz.load(path).n_estimators == compiled["forest"].n_estimators


def test_a_forest_asked_for_as_a_linear_model_is_refused_in_one_line(compiled, tmp_path):
    path = npz.save(compiled["forest"], tmp_path)
    with pytest.raises(ValueError, match="it holds a compiled forest") as refused:
        npz.load(path, "linear")
    assert str(refused.value) == (
        f"{path} is not a valid compiled linear model: it holds a compiled forest, not a "
        "compiled linear model"
    )
