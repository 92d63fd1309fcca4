"""The serving core: a model resolved to one version, loaded once, predicting rides.

Batch scoring, the web service and the stream scorer all stand on this module, so the three
share the model URI forms, the trust rules, the fast path and the feature rules. It imports
neither Prefect nor a web framework. A `ServingModel` holds no state that changes between
calls: one instance serves any number of threads.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ride_duration.core.errors import (
    ConfigurationError,
    ModelCheckError,
    RideError,
    TrackingServerUnreachableError,
)
from ride_duration.core.settings import Settings
from ride_duration.core.uris import display_uri
from ride_duration.data import rules
from ride_duration.model.loading import load_compiled, load_model
from ride_duration.model.predictors import make_predictor
from ride_duration.model.resolve import ModelRef, resolve_model
from ride_duration.model.runtimes.base import Predictor

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServingModel:
    """A model pinned to one version, ready to predict."""

    ref: ModelRef
    predictor: Predictor

    @property
    def version(self) -> str:
        """What answers and outputs record: "NAME/VERSION", else the run id."""
        return self.ref.label

    def score(self, rides: Sequence[object]) -> Scored:
        """Check `rides` and predict the minutes of those that keep the rules, in one
        vectorised call: what every transport scores with.

        A ride has `PULocationID`, `DOLocationID` and `trip_distance`, checked by the batch
        rules (`rules.check_rides`); a ride that breaks one is in `errors`, by its position.
        """
        checked = rules.check_rides(rides)
        return Scored(checked.kept, self._predict(checked), checked.errors)

    def predict_rides(self, rides: Sequence[object]) -> np.ndarray:
        """Predicted minutes for each ride, in order, or none: the first ride that breaks a
        rule raises its RideError (a request is answered whole or refused, before any ride
        is predicted)."""
        checked = rules.check_rides(rides)
        if checked.errors:
            raise checked.errors[0]
        return self._predict(checked)

    def _predict(self, checked: rules.CheckedRides) -> np.ndarray:
        """The kept rides' predictions, from one call (none for no ride)."""
        return self.predictor.predict_checked(checked) if checked.kept else np.empty(0)


@dataclass(frozen=True)
class Scored:
    """The rides of one scoring call: the positions of those kept, their predicted minutes in
    the same order, and the broken rule of each other ride."""

    kept: list[int]
    predictions: np.ndarray
    errors: list[RideError]


def predictor_for(model: ModelRef, available: tuple[str, ...] | None = None) -> Predictor:
    """The predictor of a resolved model (loaded once per process), given the features at hand
    (None: all of them).

    The model's compiled form when it has one (a forest or a linear model: numpy alone,
    exactly scikit-learn's answers), else the model itself through scikit-learn or MLflow,
    which the serving install leaves out: there, a model without a compiled form is refused in
    one line.
    """
    loaded = load_compiled(model.resolved_uri, model.location)
    if loaded is None:
        if importlib.util.find_spec("sklearn") is None:
            # The compile command takes a registered version: name this one, or say so.
            version = f"models:/{model.name}/{model.version}" if model.version else None
            raise ConfigurationError(
                f"model {display_uri(model.uri)} has no compiled form, and this install has "
                "no scikit-learn: a random forest or a linear regression"
                f"{'' if version else ' registered in MLflow'} is compiled, in the full install, "
                f"with `python -m ride_duration.compile {version or 'models:/NAME/VERSION'}`; any "
                "other model is served by the full install or image"
            )
        loaded = load_model(model.resolved_uri, model.location)
    return make_predictor(loaded, available)


def needed_fields(model: ModelRef) -> list[str] | None:
    """The canonical trip fields `model` needs, from its compiled form (numpy alone); None
    when it has no compiled form to say."""
    from ride_duration.data.features import required_fields

    compiled = load_compiled(model.resolved_uri, model.location)
    return None if compiled is None else required_fields(make_predictor(compiled).features)


def load(uri: str, settings: Settings) -> ServingModel:
    """Resolve `uri` (an alias becomes a fixed version), load the model, make its predictor."""
    model = resolve_model(uri, settings.trusted_model_prefixes, tracking_uri=settings.tracking_uri)
    return ServingModel(model, predictor_for(model))


# What a model must answer before it serves: a mile between unknown zones, and a real trip.
CHECK_RIDES = (
    {"PULocationID": None, "DOLocationID": None, "trip_distance": 1.0},
    {"PULocationID": 130, "DOLocationID": 205, "trip_distance": 3.66},
)


def check_answers(model: ServingModel) -> None:
    """Refuse a model that does not answer CHECK_RIDES with minutes (a finite number each).

    It is also the first prediction, made before the model serves: what that sets up (the
    compiled form's lookups, or scikit-learn's) is ready before gunicorn forks its workers, or
    before a refreshed model takes over, so no request pays for it.
    """
    try:
        answers = model.predict_rides(CHECK_RIDES)
    except Exception as error:  # noqa: BLE001 - any failure of the model's own is its refusal
        raise ModelCheckError(
            f"model {model.version} fails on a check ride ({type(error).__name__}: {error}): "
            "it is not served"
        ) from None
    if answers.shape != (len(CHECK_RIDES),) or not np.isfinite(answers).all():
        shown = ", ".join(f"{value:g}" for value in np.ravel(answers)[: len(CHECK_RIDES)])
        raise ModelCheckError(
            f"model {model.version} answers [{shown}] for {len(CHECK_RIDES)} check rides, not a "
            "finite number of minutes each: it is not served"
        )


def load_for_serving(settings: Settings) -> ServingModel:
    """The model the online modes serve: the settings' model, pinned to one version.

    When the tracking server does not answer (MLflow's retries are bounded by MLFLOW_RETRIES
    and MLFLOW_TIMEOUT_SECONDS, so this takes seconds, not minutes), the model comes from
    MODEL_LOCATION, an artifact folder or s3:// location that must be trusted by prefix too.
    """
    settings.configure_mlflow()
    try:
        model = load(settings.default_model_uri, settings)
    except TrackingServerUnreachableError as error:
        if not settings.model_location:
            raise TrackingServerUnreachableError(
                f"{error}, or set MODEL_LOCATION to the model's artifact location"
            ) from None
        logger.warning(
            "%s; loading MODEL_LOCATION %s instead", error, display_uri(settings.model_location)
        )
        model = load(settings.model_location, settings)
    check_answers(model)
    logger.info(
        "serving %s = %s (run %s) with %s",
        display_uri(model.ref.uri),
        model.version,
        model.ref.run_id,
        model.predictor.path,
    )
    return model
