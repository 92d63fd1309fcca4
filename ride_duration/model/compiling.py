"""Compiling a model (the command `python -m ride_duration.compile MODEL_URI`).

`train.py` compiles every model of a compiled kind it logs (`ride_duration.forest.npz.KINDS`:
a random forest, a linear regression); this command compiles a version logged before. The
compiled form (`forest.npz`: the vocabulary, the tree arrays and the exact lookup table;
`linear.npz`: the vocabulary, the coefficients and the intercept) is checked against
scikit-learn (n_jobs=1), bit for bit, on the training rows and on probe rows
(`ride_duration.forest.verify`, `ride_duration.forest.linear`), and only then written beside
the model's pickle, as an artifact of the same MLflow model. Anything that differs in one bit
is refused.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ride_duration.core.errors import ScoringError
from ride_duration.core.settings import Settings
from ride_duration.forest import errors, npz

logger = logging.getLogger(__name__)


class CompileError(ScoringError):
    """The model could not be compiled exactly, or its compiled form was not written."""


@dataclass(frozen=True)
class Compiled:
    """A verified compiled form and what the check covered."""

    model: npz.CompiledModel
    verification: npz.Verified

    @property
    def kind(self) -> npz.CompiledKind:
        """The compiled kind of `model`."""
        kind = npz.kind_of(self.model)
        assert kind is not None  # compile_checked makes only compiled kinds
        return kind

    def describe(self) -> str:
        """One line on what was checked."""
        return self.verification.describe()


def compile_checked(pipeline: Any, training_rows: Sequence[Mapping[str, Any]]) -> Compiled | None:
    """The pipeline's compiled form, verified; None when it is of no compiled kind.

    Raises CompileError when the compiled form differs from scikit-learn, saying where.
    """
    kind = npz.kind_compiling(pipeline)
    if kind is None:
        logger.info("not compiled: no compiled kind evaluates a %s", type(pipeline).__name__)
        return None
    try:
        model = kind.compile(pipeline)
        verification = kind.verify(model, pipeline, training_rows)
    except errors.NotCompilableError as reason:
        logger.info("not compiled: %s", reason)
        return None
    except errors.CompiledMismatchError as mismatch:
        raise CompileError(f"the {kind.noun} was refused: {mismatch}") from None
    return Compiled(model, verification)


def log_to_model(model_id: str, compiled: Compiled) -> None:
    """Add the compiled form to the MLflow logged model `model_id`, beside its pickle."""
    import mlflow

    with tempfile.TemporaryDirectory(prefix="ride-duration-compile-") as folder:
        path = npz.save(compiled.model, folder)
        mlflow.MlflowClient().log_model_artifact(model_id, str(path))


def compile_registered(uri: str, settings: Settings, template: str) -> str:
    """Compile, verify and log registered version `uri`; one line on what was checked.
    CompileError when it is of no compiled kind or differs from scikit-learn."""
    model_id, pipeline, rows, label = _registered(uri, settings, template)
    compiled = compile_checked(pipeline, rows)
    if compiled is None:
        raise CompileError(
            f"{label} is not a DictVectorizer + random forest or LinearRegression pipeline, so "
            "it has no compiled form: the full install or image serves it with scikit-learn"
        )
    log_to_model(model_id, compiled)
    return f"compiled {label}: {compiled.describe()}; logged as {compiled.kind.file_name}"


def _registered(
    uri: str, settings: Settings, template: str
) -> tuple[str, Any, list[dict[str, Any]], str]:
    """The logged model id, pipeline and training rows of a registered version."""
    import mlflow

    from ride_duration.model.loading import load_model
    from ride_duration.model.resolve import resolve_model

    model = resolve_model(uri, settings.trusted_model_prefixes, tracking_uri=settings.tracking_uri)
    if not (model.name and model.version):
        raise CompileError(f"{uri} is not a registered model version: give models:/NAME/VERSION")
    client = mlflow.MlflowClient()
    version = client.get_model_version(model.name, model.version)
    model_id = getattr(version, "model_id", None)
    if not model_id:
        assert version.source is not None  # MLflow requires a version's source
        model_id = version.source.removeprefix("models:/")
    pipeline = load_model(model.resolved_uri, model.location)
    rows = _training_rows(client, version.run_id, template, settings.batch_size)
    return model_id, pipeline, rows, model.label


def _training_rows(
    client: Any, run_id: str | None, template: str, batch_size: int
) -> list[dict[str, Any]]:
    """The feature rows the run trained on (its taxi type and month), if they can be read."""
    from ride_duration.core.months import Month
    from ride_duration.data import features
    from ride_duration.data.sources import read_trips, trip_file_uri

    params = client.get_run(run_id).data.params if run_id else {}
    if not {"taxi_type", "train_month"} <= set(params):
        logger.warning("the run has no training month: verifying around the thresholds only")
        return []
    month = Month.parse(params["train_month"])
    uri = trip_file_uri(template, params["taxi_type"], month)
    try:
        trips = read_trips(uri, params["taxi_type"], month, batch_size).table
    except ScoringError as error:
        logger.warning("training rows not read (%s): verifying around the thresholds only", error)
        return []
    return features.feature_records(trips, features.available_features(params["taxi_type"]))
