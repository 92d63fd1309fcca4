"""A model's reference profile: taken when it is trained, or added to a version logged before.

The command `ride-duration-profile MODEL_URI` adds one to a version logged before profiles.

The profile (`ride_duration.monitoring.profile`) counts the trips the model was fitted on and
its own predictions of them, through the runtime batch scoring uses, so that scoring its
training month again measures a drift of exactly 0. It is logged beside the model's pickle as
`profile.npz`, an artifact of the same MLflow model.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from ride_duration.core.errors import ScoringError
from ride_duration.core.months import Month
from ride_duration.core.settings import Settings
from ride_duration.data import features
from ride_duration.data.sources import read_trips, trip_file_uri
from ride_duration.model.distinct import PredictionCache
from ride_duration.model.runtimes.base import Predictor
from ride_duration.monitoring.columns import profiled_columns
from ride_duration.monitoring.profile import PROFILE_FILE, Profile


class ProfileCommandError(ScoringError):
    """A version whose reference profile cannot be taken."""


def reference_profile(predictor: Predictor, trips: features.PreparedTrips) -> Profile:
    """The profile of the trips a model was fitted on (prepared, with their drops) and of its
    predictions of them, by `predictor`, the runtime scoring will use."""
    table = trips.table
    if table.num_rows:
        predictions = predictor.predict_batch(table, PredictionCache()).values
    else:
        predictions = np.empty(0, dtype=np.float64)
    dropped = sum(trips.dropped.values())
    return Profile.reference(
        profiled_columns(table, predictions), table.num_rows + dropped, dropped
    )


def log_profile(model_id: str, profile: Profile) -> None:
    """Add the profile to the MLflow logged model `model_id`, beside its pickle."""
    import mlflow

    with tempfile.TemporaryDirectory(prefix="ride-duration-profile-") as folder:
        path = os.path.join(folder, PROFILE_FILE)
        with open(path, "wb") as handle:
            handle.write(profile.to_bytes())
        mlflow.MlflowClient().log_model_artifact(model_id, path)


def profile_registered(uri: str, settings: Settings, template: str) -> str:
    """Take and log the reference profile of registered version `uri`; one line on it."""
    import mlflow

    from ride_duration.model.resolve import resolve_model
    from ride_duration.model.service import predictor_for

    model = resolve_model(uri, settings.trusted_model_prefixes, tracking_uri=settings.tracking_uri)
    if not (model.name and model.version):
        raise ProfileCommandError(
            f"{uri} is not a registered model version: give models:/NAME/VERSION"
        )
    client = mlflow.MlflowClient()
    version = client.get_model_version(model.name, model.version)
    params = client.get_run(version.run_id).data.params if version.run_id else {}
    if not {"taxi_type", "train_month"} <= set(params):
        raise ProfileCommandError(
            f"{model.label}'s run does not say which taxi type and month it was trained on "
            "(params taxi_type and train_month), so its training trips cannot be profiled"
        )
    taxi_type, month = params["taxi_type"], Month.parse(params["train_month"])
    trips = read_trips(
        trip_file_uri(template, taxi_type, month), taxi_type, month, settings.batch_size
    )
    predictor = predictor_for(model, features.available_features(taxi_type))
    profile = reference_profile(predictor, trips)
    model_id = getattr(version, "model_id", None) or (version.source or "").removeprefix("models:/")
    log_profile(model_id, profile)
    return (
        f"profiled {model.label} on {trips.table.num_rows:,} trips of {taxi_type} {month}; "
        f"logged as {PROFILE_FILE}"
    )
