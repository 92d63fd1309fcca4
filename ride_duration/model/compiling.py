"""Compiling a model's forest (the command `python -m ride_duration.compile MODEL_URI`).

`train.py` compiles every forest it logs; this command compiles a version logged before. The
compiled form (`forest.npz`: the vocabulary, the tree arrays and the exact lookup table) is
checked against scikit-learn with n_jobs=1, bit for bit, on the training rows and around
every threshold (`ride_duration.forest.verify`), and only then written beside the model's
pickle, as an artifact of the same MLflow model. Anything that differs in one bit is refused.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ride_duration.core.errors import ScoringError
from ride_duration.core.settings import Settings
from ride_duration.forest import compiled, compiler, errors, npz, verify

logger = logging.getLogger(__name__)


class CompileError(ScoringError):
    """The forest could not be compiled exactly, or its compiled form was not written."""


@dataclass(frozen=True)
class Compiled:
    """A verified compiled form and what the check covered."""

    forest: compiled.CompiledForest
    verification: verify.Verification

    def describe(self) -> str:
        """One line on what was checked."""
        v = self.verification
        return (
            f"bit for bit equal to scikit-learn (n_jobs=1) on {v.given_rows:,} training rows "
            f"and {v.grid_rows:,} rows around its {v.thresholds:,} distance thresholds"
        )


def compile_checked(pipeline: Any, training_rows: Sequence[Mapping[str, Any]]) -> Compiled | None:
    """The pipeline's compiled forest, verified; None when it is not a forest.

    Raises CompileError when the compiled form differs from scikit-learn, saying where.
    """
    try:
        compiled = compiler.compile_pipeline(pipeline)
        verification = verify.verify(compiled, pipeline, training_rows)
    except errors.NotCompilableError as reason:
        logger.info("not compiled: %s", reason)
        return None
    except errors.CompiledMismatchError as mismatch:
        raise CompileError(f"the compiled forest was refused: {mismatch}") from None
    return Compiled(compiled, verification)


def log_to_model(model_id: str, compiled: Compiled) -> None:
    """Add the compiled form to the MLflow logged model `model_id`, beside its pickle."""
    import mlflow

    with tempfile.TemporaryDirectory(prefix="ride-duration-compile-") as folder:
        path = npz.save(compiled.forest, Path(folder) / npz.FILE_NAME)
        mlflow.MlflowClient().log_model_artifact(model_id, str(path))


def compile_registered(uri: str, settings: Settings, template: str) -> str:
    """Compile, verify and log the forest of registered version `uri`; one line on what was
    checked. CompileError when it is not a forest or differs from scikit-learn."""
    model_id, pipeline, rows, label = _registered(uri, settings, template)
    compiled = compile_checked(pipeline, rows)
    if compiled is None:
        raise CompileError(
            f"{label} is not a DictVectorizer + random forest pipeline, so it has no compiled "
            "form: the full install or image serves it with scikit-learn"
        )
    log_to_model(model_id, compiled)
    return f"compiled {label}: {compiled.describe()}; logged as {npz.FILE_NAME}"


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
    from ride_duration.data import features as f
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
    return f.feature_records(trips, f.available_features(params["taxi_type"]))
