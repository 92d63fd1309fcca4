"""Loading a resolved model once (`model.loading`): its compiled forest first, else its pickle."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from sklearn.ensemble import RandomForestRegressor
from sklearn.feature_extraction import DictVectorizer
from sklearn.pipeline import make_pipeline

from ride_duration.core.errors import ModelNotFoundError
from ride_duration.forest import compiler, npz
from ride_duration.model import loading


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A model folder as MLflow saves a scikit-learn model, with its compiled forest beside it."""
    import mlflow.sklearn

    rows = [{"PU_DO": f"{i % 7}_{i % 5}", "trip_distance": float(i % 11)} for i in range(300)]
    target = np.array([row["trip_distance"] * 2.0 + len(row["PU_DO"]) for row in rows])
    pipeline = make_pipeline(
        DictVectorizer(), RandomForestRegressor(n_estimators=3, random_state=0)
    )
    pipeline.fit(rows, target)
    folder = tmp_path_factory.mktemp("model") / "model"
    mlflow.sklearn.save_model(pipeline, str(folder), serialization_format="cloudpickle")
    npz.save(compiler.compile_pipeline(pipeline), folder / npz.FILE_NAME)
    return folder, pipeline, rows


def test_the_compiled_forest_loads_without_the_pickle_and_predicts_the_same(saved):
    folder, pipeline, _ = saved
    compiled = loading.load_compiled(str(folder))
    pairs = compiled.vocabulary.encode(np.array([1, 3]), np.array([1, 3]))
    got = compiled.predict(pairs, np.array([2.0, 5.0]))
    expected = pipeline.predict(
        [{"PU_DO": "1_1", "trip_distance": 2.0}, {"PU_DO": "3_3", "trip_distance": 5.0}]
    )
    assert got.tobytes() == np.asarray(expected, dtype=np.float64).tobytes()


def test_the_pickle_loads_through_its_flavour_once_per_process(saved):
    folder, pipeline, rows = saved
    model = loading.load_model(str(folder))
    assert model is loading.load_model(str(folder))
    assert model.predict(rows[:5]).tolist() == pipeline.predict(rows[:5]).tolist()


def test_a_model_without_a_compiled_forest_has_none(tmp_path):
    (tmp_path / "MLmodel").write_text("flavors: {}\n")
    assert loading.load_compiled(str(tmp_path)) is None


def test_a_compiled_forest_that_does_not_load_is_said_and_skipped(tmp_path, caplog):
    (tmp_path / "MLmodel").write_text("flavors: {}\n")
    (tmp_path / npz.FILE_NAME).write_bytes(b"not a zip file")
    with caplog.at_level(logging.WARNING):
        assert loading.load_compiled(str(tmp_path), str(tmp_path)) is None
    assert "does not load" in caplog.text


@pytest.mark.parametrize(
    ("sklearn", "why"),
    [
        ("{serialization_format: cloudpickle, pickled_model: 5}", "pickled_model is a number"),
        ("{serialization_format: cloudpickle, pickled_model: [m.pkl]}", "pickled_model is a list"),
        ("{serialization_format: cloudpickle}", "pickled_model is not a file of its folder"),
        (
            "{serialization_format: cloudpickle, pickled_model: ../../m.pkl}",
            "pickled_model is not a file of its folder",
        ),
        (
            "{serialization_format: cloudpickle, pickled_model: /etc/m.pkl}",
            "pickled_model is not a file of its folder",
        ),
        ("{serialization_format: 7, pickled_model: m.pkl}", "serialization_format is a number"),
        ("{sklearn_version: [1], pickled_model: m.pkl}", "sklearn_version is a list"),
    ],
)
def test_a_flavour_field_of_another_type_is_a_one_line_refusal(tmp_path, sklearn, why):
    (tmp_path / "MLmodel").write_text(f"flavors:\n  sklearn: {sklearn}\n")
    with pytest.raises(ModelNotFoundError, match=f"^no MLflow model at {tmp_path}: .*{why}"):
        loading.load_model(str(tmp_path))


@pytest.fixture(scope="module")
def saved_linear(tmp_path_factory):
    """A linear model's folder, with its compiled form (`linear.npz`) beside the pickle."""
    import mlflow.sklearn
    from sklearn.linear_model import LinearRegression

    from ride_duration.forest import linear

    rows = [{"PU_DO": f"{i % 7}_{i % 5}", "trip_distance": float(i % 11)} for i in range(300)]
    target = np.array([row["trip_distance"] * 2.5 + len(row["PU_DO"]) for row in rows])
    pipeline = make_pipeline(DictVectorizer(), LinearRegression()).fit(rows, target)
    folder = tmp_path_factory.mktemp("linear") / "model"
    mlflow.sklearn.save_model(pipeline, str(folder), serialization_format="cloudpickle")
    npz.save(linear.compile_pipeline(pipeline), folder)
    return folder, pipeline


def test_a_compiled_linear_model_loads_without_the_pickle_and_predicts_the_same(saved_linear):
    folder, pipeline = saved_linear
    compiled = loading.load_compiled(str(folder))
    assert type(compiled).__name__ == "CompiledLinear"
    pairs = compiled.vocabulary.encode(np.array([1, 3, 99]), np.array([1, 3, 99]))
    got = compiled.predict(pairs, np.array([2.0, 5.0, 0.0]))
    expected = pipeline.predict(
        [
            {"PU_DO": "1_1", "trip_distance": 2.0},
            {"PU_DO": "3_3", "trip_distance": 5.0},
            {"PU_DO": "99_99", "trip_distance": 0.0},
        ]
    )
    assert got.tobytes() == np.asarray(expected, dtype=np.float64).tobytes()


@pytest.mark.parametrize(
    ("file_name", "says"),
    [
        ("linear.npz", "it holds a compiled forest, not a compiled linear model"),
        ("forest.npz", "it holds a compiled linear model, not a compiled forest"),
    ],
)
def test_a_compiled_file_of_the_wrong_kind_is_said_in_one_line_and_skipped(
    saved, saved_linear, tmp_path, caplog, file_name, says
):
    """Each kind's file holds that kind: a file holding another is reported, not used."""
    forest_folder, linear_folder = saved[0], saved_linear[0]
    source = forest_folder / "forest.npz" if file_name == "linear.npz" else linear_folder
    (tmp_path / "MLmodel").write_text("flavors: {}\n")
    wrong = source if source.is_file() else source / "linear.npz"
    (tmp_path / file_name).write_bytes(wrong.read_bytes())
    with caplog.at_level(logging.WARNING):
        assert loading.load_compiled(str(tmp_path), str(tmp_path)) is None
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert says in record.getMessage()
    assert "\n" not in record.getMessage()
