"""Training the ride-duration pipeline on one month and validating it on the next."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from ride_duration.core.errors import InputNotFoundError, ScoringError
from ride_duration.core.months import Month
from ride_duration.data import features
from ride_duration.data.sources import read_trips, trip_file_uri
from ride_duration.model.artifacts import is_connection_failure, server_unreachable
from ride_duration.model.compiling import Compiled, compile_checked, log_to_model
from ride_duration.model.predictors import make_predictor
from ride_duration.model.profiling import log_profile, reference_profile
from ride_duration.monitoring.profile import Profile

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
    compiled: str  # the compiled form logged with it and what was checked of it, or why none


def make_pipeline(estimator: Estimator) -> Any:
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
) -> features.PreparedTrips:
    """A month's trips, or, when its file is missing, an error that says which month it is."""
    try:
        return read_trips(trip_file_uri(template, taxi_type, month), taxi_type, month, batch_size)
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

    with _unanswered_as_one_line():
        valid_month = month.shift(1)
        training = _month_trips(input_uri_template, taxi_type, month, batch_size, "training")
        train_trips = training.table
        valid_trips = _month_trips(
            input_uri_template, taxi_type, valid_month, batch_size, "validation"
        ).table
        logger.info(
            "training on %d trips of %s %s, validating on %d of %s",
            train_trips.num_rows,
            taxi_type,
            month,
            valid_trips.num_rows,
            valid_month,
        )
        feature_names = features.available_features(taxi_type)
        mlflow.set_experiment(experiment_name)
        with mlflow.start_run() as run:
            mlflow.log_params(
                {
                    "taxi_type": taxi_type,
                    "train_month": str(month),
                    "valid_month": str(valid_month),
                    "estimator": estimator,
                    "features": ",".join(feature_names),
                    "train_rows": train_trips.num_rows,
                    **(RANDOM_FOREST_PARAMS if estimator == "random-forest" else {}),
                }
            )
            with _step(f"fitting {_describe(estimator)}"):
                pipeline, training_rows, rmse = _fit(
                    estimator, feature_names, train_trips, valid_trips
                )
            logger.info("rmse on %s %s: %.4f", taxi_type, valid_month, rmse)
            mlflow.log_metric("rmse", rmse)
            # Compiled and verified before anything is logged: a mismatch logs nothing.
            model = "forest" if estimator == "random-forest" else "linear model"
            with _step(f"compiling the {model} and checking it against scikit-learn"):
                compiled = compile_checked(pipeline, training_rows)
            with _step("profiling the training trips and the model's predictions of them"):
                predictor = make_predictor(compiled.model if compiled else pipeline, feature_names)
                profile = reference_profile(predictor, training)
            with _step(f"logging the model to MLflow and registering it as {model_name}"):
                version = _log(pipeline, compiled, profile, model_name)
        mlflow.MlflowClient().set_registered_model_alias(model_name, alias, version)
        return TrainedModel(
            run_id=run.info.run_id,
            model_name=model_name,
            model_version=version,
            alias=alias,
            rmse=rmse,
            compiled=f"{compiled.kind.noun}: {compiled.describe()}"
            if compiled
            else "no compiled form: scored with scikit-learn",
        )


@contextlib.contextmanager
def _unanswered_as_one_line() -> Iterator[None]:
    """A tracking server that did not answer (after MLflow's own bounded retries) as one line."""
    try:
        yield
    except ScoringError:
        raise  # already one line (a trip file that cannot be read is not MLflow's)
    except Exception as error:
        if not is_connection_failure(error):
            raise
        import mlflow

        raise server_unreachable(mlflow.get_tracking_uri(), error) from None


@contextlib.contextmanager
def _step(doing: str) -> Iterator[None]:
    """Say what a slow step does before it starts, and how long it took once done."""
    logger.info("%s ...", doing)
    started = time.perf_counter()
    yield
    logger.info("  done in %.0f s", time.perf_counter() - started)


def _describe(estimator: Estimator) -> str:
    """The estimator as its progress line names it."""
    if estimator == "linear":
        return "DictVectorizer + LinearRegression"
    cores = os.cpu_count() or 1
    return (
        f"DictVectorizer + RandomForestRegressor ({RANDOM_FOREST_PARAMS['n_estimators']} trees "
        f"on {cores} core{'s' if cores > 1 else ''}, the slow step)"
    )


def _fit(
    estimator: Estimator,
    feature_names: tuple[str, ...],
    train_trips: pa.Table,
    valid_trips: pa.Table,
) -> tuple[Any, list[dict[str, Any]], float]:
    """The fitted pipeline, the feature rows it was fitted on, and its RMSE on the next month."""
    from sklearn.metrics import root_mean_squared_error

    pipeline = make_pipeline(estimator)
    training_rows = features.feature_records(train_trips, feature_names)
    pipeline.fit(training_rows, train_trips[features.ACTUAL_DURATION].to_numpy())
    predictions = pipeline.predict(features.feature_records(valid_trips, feature_names))
    actual = valid_trips[features.ACTUAL_DURATION].to_numpy()
    return pipeline, training_rows, float(root_mean_squared_error(actual, predictions))


def _log(pipeline: Any, compiled: Compiled | None, profile: Profile, model_name: str) -> str:
    """Log the pipeline (its compiled form and reference profile beside it) to the active run;
    its version."""
    import mlflow.sklearn
    import sklearn

    # No signature: with one, pyfunc would turn the dict input into a DataFrame.
    # skops (the default format) rejects RandomForest's tree type, hence cloudpickle; MLflow's
    # warning about it is dropped, as the risk is what TRUSTED_MODEL_PREFIXES answers.
    sklearn_logger = logging.getLogger("mlflow.sklearn")
    sklearn_logger.addFilter(_not_the_pickle_warning)
    # MLflow prints "Successfully registered model ..." and "Created version ..." on stderr:
    # the command's own lines say so, and the prints are kept for --debug.
    printed = io.StringIO()
    try:
        with contextlib.redirect_stderr(printed):
            info = mlflow.sklearn.log_model(
                pipeline,
                name="model",
                serialization_format="cloudpickle",
                pip_requirements=[
                    f"scikit-learn=={sklearn.__version__}",
                    f"numpy=={np.__version__}",
                ],
                registered_model_name=model_name,
            )
    finally:
        sklearn_logger.removeFilter(_not_the_pickle_warning)
        logger.debug("MLflow printed: %s", printed.getvalue().strip())
    if compiled is not None:
        log_to_model(info.model_id, compiled)
    log_profile(info.model_id, profile)
    return str(info.registered_model_version)


def _not_the_pickle_warning(record: logging.LogRecord) -> bool:
    """False for MLflow's warning that a model is saved with (cloud)pickle."""
    return not record.getMessage().startswith("Saving scikit-learn models in the pickle")
