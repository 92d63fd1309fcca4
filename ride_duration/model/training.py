"""Training the ride-duration pipeline on one month and validating it on the next."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ride_duration.core.months import Month
from ride_duration.data import features as f
from ride_duration.data.sources import read_trips, trip_file_uri
from ride_duration.model.compiling import compile_checked, log_to_model

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
    import mlflow.sklearn
    import sklearn
    from sklearn.metrics import root_mean_squared_error

    features = f.available_features(taxi_type)
    valid_month = month.shift(1)
    train_uri = trip_file_uri(input_uri_template, taxi_type, month)
    valid_uri = trip_file_uri(input_uri_template, taxi_type, valid_month)
    train_trips = read_trips(train_uri, taxi_type, month, batch_size).table
    valid_trips = read_trips(valid_uri, taxi_type, valid_month, batch_size).table
    logger.info(
        "training on %d trips, validating on %d", train_trips.num_rows, valid_trips.num_rows
    )

    pipeline = make_pipeline(estimator)
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
        training_rows = f.feature_records(train_trips, features)
        pipeline.fit(training_rows, train_trips[f.ACTUAL_DURATION].to_numpy())
        predictions = pipeline.predict(f.feature_records(valid_trips, features))
        rmse = float(
            root_mean_squared_error(valid_trips[f.ACTUAL_DURATION].to_numpy(), predictions)
        )
        mlflow.log_metric("rmse", rmse)
        # No signature: with one, pyfunc would turn the dict input into a DataFrame.
        # skops (the default format) rejects RandomForest's tree type, hence cloudpickle.
        # Compiled and verified before anything is logged: a mismatch logs nothing.
        compiled = compile_checked(pipeline, training_rows)
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            serialization_format="cloudpickle",
            pip_requirements=[f"scikit-learn=={sklearn.__version__}", f"numpy=={np.__version__}"],
            registered_model_name=model_name,
        )
        if compiled is not None:
            log_to_model(info.model_id, compiled)
    version = str(info.registered_model_version)
    mlflow.MlflowClient().set_registered_model_alias(model_name, alias, version)
    return TrainedModel(
        run_id=run.info.run_id,
        model_name=model_name,
        model_version=version,
        alias=alias,
        rmse=rmse,
        compiled=compiled.describe() if compiled else "not a forest: scored with scikit-learn",
    )
