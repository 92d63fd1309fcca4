"""Training the ride-duration pipeline on one month and validating it on the next."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa

from ride_duration.core.errors import InputNotFoundError
from ride_duration.core.months import Month
from ride_duration.data import features as f
from ride_duration.data.sources import read_trips, trip_file_uri
from ride_duration.model.compiling import Compiled, compile_checked, log_to_model

logger = logging.getLogger(__name__)

Estimator = Literal["random-forest", "linear"]
RANDOM_FOREST_PARAMS = {
    "max_depth": 20,
    "n_estimators": 100,
    "min_samples_leaf": 10,
    "random_state": 0,
    "n_jobs": -1,
}


@dataclass(frozen=True)
class TrainedModel:
    """What `python train.py` reports."""

    run_id: str
    model_name: str
    model_version: str
    alias: str
    rmse: float
    compiled: str  # what was checked of the compiled forest logged with it, or why none was


def make_pipeline(estimator: Estimator) -> object:
    """DictVectorizer followed by the chosen regressor."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline as sk_make_pipeline

    regressor = (
        RandomForestRegressor(**RANDOM_FOREST_PARAMS)
        if estimator == "random-forest"
        else LinearRegression()
    )
    return sk_make_pipeline(DictVectorizer(), regressor)


def _month_trips(
    template: str, taxi_type: str, month: Month, batch_size: int, role: str
) -> pa.Table:
    """A month's trips, or, when its file is missing, an error that says which month it is."""
    try:
        return read_trips(
            trip_file_uri(template, taxi_type, month), taxi_type, month, batch_size
        ).table
    except InputNotFoundError as error:
        why = " (training validates on the month after the one it trains on)"
        raise InputNotFoundError(
            f"{role} month {taxi_type} {month}{why if role == 'validation' else ''}: {error}"
        ) from None


def train(
    *,
    taxi_type: str,
    month: Month,
    estimator: Estimator,
    input_uri_template: str,
    experiment_name: str,
    model_name: str,
    alias: str,
    batch_size: int,
) -> TrainedModel:
    """Fit on one month, validate on the next, log to MLflow, register and move the alias."""
    import mlflow

    valid_month = month.shift(1)
    train_trips = _month_trips(input_uri_template, taxi_type, month, batch_size, "training")
    valid_trips = _month_trips(input_uri_template, taxi_type, valid_month, batch_size, "validation")
    logger.info(
        "training on %d trips, validating on %d", train_trips.num_rows, valid_trips.num_rows
    )
    features = f.available_features(taxi_type)
    mlflow.set_experiment(experiment_name)
    with mlflow.start_run() as run:
        mlflow.log_params(
            {
                "taxi_type": taxi_type,
                "train_month": str(month),
                "valid_month": str(valid_month),
                "estimator": estimator,
                "features": ",".join(features),
                "train_rows": train_trips.num_rows,
                **(RANDOM_FOREST_PARAMS if estimator == "random-forest" else {}),
            }
        )
        pipeline, training_rows, rmse = _fit(estimator, features, train_trips, valid_trips)
        mlflow.log_metric("rmse", rmse)
        # Compiled and verified before anything is logged: a mismatch logs nothing.
        compiled = compile_checked(pipeline, training_rows)
        version = _log(pipeline, compiled, model_name)
    mlflow.MlflowClient().set_registered_model_alias(model_name, alias, version)
    return TrainedModel(
        run_id=run.info.run_id,
        model_name=model_name,
        model_version=version,
        alias=alias,
        rmse=rmse,
        compiled=compiled.describe() if compiled else "not a forest: scored with scikit-learn",
    )


def _fit(
    estimator: Estimator, features: tuple[str, ...], train_trips: pa.Table, valid_trips: pa.Table
) -> tuple[object, list[dict], float]:
    """The fitted pipeline, the feature rows it was fitted on, and its RMSE on the next month."""
    from sklearn.metrics import root_mean_squared_error

    pipeline = make_pipeline(estimator)
    training_rows = f.feature_records(train_trips, features)
    pipeline.fit(training_rows, train_trips[f.ACTUAL_DURATION].to_numpy())
    predictions = pipeline.predict(f.feature_records(valid_trips, features))
    actual = valid_trips[f.ACTUAL_DURATION].to_numpy()
    return pipeline, training_rows, float(root_mean_squared_error(actual, predictions))


def _log(pipeline: object, compiled: Compiled | None, model_name: str) -> str:
    """Log the pipeline (and its compiled forest beside it) to the active run; its version."""
    import mlflow.sklearn
    import sklearn

    # No signature: with one, pyfunc would turn the dict input into a DataFrame.
    # skops (the default format) rejects RandomForest's tree type, hence cloudpickle.
    info = mlflow.sklearn.log_model(
        pipeline,
        name="model",
        serialization_format="cloudpickle",
        pip_requirements=[f"scikit-learn=={sklearn.__version__}", f"numpy=={np.__version__}"],
        registered_model_name=model_name,
    )
    if compiled is not None:
        log_to_model(info.model_id, compiled)
    return str(info.registered_model_version)
