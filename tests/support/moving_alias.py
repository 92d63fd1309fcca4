"""A registry in sqlite whose alias a test moves: model "ride-duration", versions of real
models (two compiled linear models with different answers, one whose folder holds no model,
one that answers NaN), for the tests of `model.refresh` and of the scorers that use it."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import cloudpickle
import numpy as np
from sklearn.dummy import DummyRegressor
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline

from ride_duration.core.settings import Settings
from ride_duration.data import features
from ride_duration.model.compiling import compile_checked
from tests.support.registry_store import sqlite_registry
from tests.support.rides import prepared

GOOD, OTHER, EMPTY, NAN = 1, 2, 3, 4


def _linear_folder(folder: Path, month: int) -> None:
    from ride_duration.forest import npz

    trips = prepared(2021, month, 2_000)
    fitted = make_pipeline(DictVectorizer(), LinearRegression())
    fitted.fit(features.feature_records(trips), trips[features.ACTUAL_DURATION].to_numpy())
    folder.mkdir()
    (folder / "MLmodel").write_text(f"run_id: run{month}\nflavors:\n  sklearn: {{}}\n")
    npz.save(compile_checked(fitted, features.feature_records(trips)).model, folder)


def _nan_folder(folder: Path) -> None:
    trips = prepared(2021, 2, 100)
    fitted = make_pipeline(DictVectorizer(), DummyRegressor())
    fitted.fit(features.feature_records(trips), trips[features.ACTUAL_DURATION].to_numpy())
    fitted[-1].constant_ = np.full_like(fitted[-1].constant_, np.nan)  # what it learned: NaN
    folder.mkdir()
    (folder / "MLmodel").write_text(
        "run_id: runnan\nflavors:\n  sklearn: {pickled_model: model.pkl, "
        "serialization_format: cloudpickle}\n"
    )
    (folder / "model.pkl").write_bytes(cloudpickle.dumps(fitted))


def moving_registry(folder: Path, **environ: str) -> tuple[Settings, Callable[[int | None], None]]:
    """The settings of a store in `folder` (production on GOOD, and `environ`: refresh is off
        unless it sets MODEL_REFRESH_SECONDS, so that a test's own looks are the only ones), and a
        function that moves the alias to a version (None: takes the store away, as a registry that
    does not answer; the next move brings it back)."""
    models = folder / "models"
    models.mkdir()
    _linear_folder(models / "good", 2)
    _linear_folder(models / "other", 3)
    (models / "empty").mkdir()
    (models / "empty" / "MLmodel").write_text("run_id: runempty\nflavors:\n  sklearn: {}\n")
    _nan_folder(models / "nan")
    folders = {GOOD: "good", OTHER: "other", EMPTY: "empty", NAN: "nan"}
    rows = [
        ("ride-duration", v, f"run{v}", str(models / name), None, "None")
        for v, name in folders.items()
    ]
    store = folder / "mlflow.db"
    uri = sqlite_registry(store, rows, [("ride-duration", "production", GOOD)])

    away = store.with_name("mlflow.db.away")

    def move(version: int | None) -> None:
        if version is None:  # the store gone: a registry that cannot be read
            if store.exists():
                store.rename(away)
            return
        if away.exists():
            away.rename(store)
        with sqlite3.connect(store) as db:
            db.execute("DELETE FROM registered_model_aliases")
            db.execute(
                "INSERT INTO registered_model_aliases VALUES (?, 'production', ?)",
                ("ride-duration", version),
            )

    settings = Settings.from_env(
        {
            "MLFLOW_TRACKING_URI": uri,
            "MODEL_URI": "models:/ride-duration@production",
            "TRUSTED_MODEL_PREFIXES": f"models:/,{models}",
            **environ,
        }
    )
    return settings, move
