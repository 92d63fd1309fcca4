"""Loading a resolved model once per process.

Its compiled form when it has one (numpy alone), else its pickle through MLflow's flavour.
"""

from __future__ import annotations

import functools
import logging
import os
import weakref
from typing import Any

from ride_duration.core.uris import display_uri
from ride_duration.forest.npz import CompiledModel
from ride_duration.model.artifacts import (
    MLmodel,
    ModelFiles,
    as_scoring_error,
    kind_of,
    not_a_model,
    parse_mlmodel,
)
from ride_duration.monitoring.profile import PROFILE_FILE, Profile, ProfileError

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=8)
def load_compiled(resolved_uri: str, location: str | None = None) -> CompiledModel | None:
    """The model's compiled form (`forest.npz` or `linear.npz` beside its pickle, by kind), or
    None when it has none.

    Plain arrays, read with numpy and no pickle: loading it runs no code and needs neither
    scikit-learn nor MLflow. A file that does not load is reported and the pickle is used.
    Only those files are fetched, and their copy is removed once read.
    """
    from ride_duration.forest import npz

    try:
        with ModelFiles(location or resolved_uri) as files:
            folder = files.fetch(*(kind.file_name for kind in npz.KINDS))
            for kind in npz.KINDS:
                path = os.path.join(folder, kind.file_name)
                if not os.path.isfile(path):
                    continue
                try:
                    model: CompiledModel = npz.load(path, kind.name)
                    return model
                except ValueError as error:
                    logger.warning(
                        "%s of %s does not load (%s): scoring with scikit-learn",
                        kind.file_name,
                        display_uri(location or resolved_uri),
                        error,
                    )
                    return None
            return None
    except Exception as error:  # noqa: BLE001 - translated to a clear error, or re-raised
        raise as_scoring_error(error, resolved_uri) from None


@functools.lru_cache(maxsize=8)
def load_profile(resolved_uri: str, location: str | None = None) -> Profile | None:
    """The model's reference profile (`profile.npz` beside its pickle), None when it has none.

    Plain arrays, no pickle. A file that does not load is reported, and the month is scored
    without a reference (its drift is not measured).
    """
    try:
        with ModelFiles(location or resolved_uri) as files:
            path = os.path.join(files.fetch(PROFILE_FILE), PROFILE_FILE)
            if not os.path.isfile(path):
                return None
            with open(path, "rb") as handle:
                data = handle.read()
    except Exception as error:  # noqa: BLE001 - translated to a clear error, or re-raised
        raise as_scoring_error(error, resolved_uri) from None
    try:
        return Profile.from_bytes(data)
    except ProfileError as error:
        logger.warning(
            "%s of %s does not load (%s): drift is not measured",
            PROFILE_FILE,
            display_uri(location or resolved_uri),
            error,
        )
        return None


@functools.lru_cache(maxsize=8)
def load_model(resolved_uri: str, location: str | None = None) -> Any:
    """The model behind a resolved URI, loaded once per process and reused across months.

    `location` is where its files are, when known. A scikit-learn model comes back as the raw
    estimator (a Pipeline, so scoring can take its fast path); any other flavour comes back as
    an MLflow pyfunc model. Only the files it needs are fetched (MLmodel and a pickle, or the
    whole folder for MLflow's own loaders), once, and their copy is removed when loaded; a
    pyfunc model may read its folder later, so that copy goes when the model does.
    """
    uri = location or resolved_uri
    files = ModelFiles(uri)
    try:
        mlmodel = parse_mlmodel(files.mlmodel_text(), uri)
        if "sklearn" in mlmodel.flavors:
            with files:
                return _load_sklearn(files, mlmodel, uri)
        import mlflow.pyfunc

        model = mlflow.pyfunc.load_model(files.fetch_all())
        weakref.finalize(model, files.close)
        return model
    except Exception as error:  # noqa: BLE001 - translated to a clear error, or re-raised
        files.close()
        raise as_scoring_error(error, resolved_uri) from None


def flavor_text(mlmodel: MLmodel, flavor: str, field: str, shown: str) -> str | None:
    """A text field of one flavour of a model (None when absent), refused in one line when
    the MLmodel gives it as anything but text."""
    value = mlmodel.flavors.get(flavor, {}).get(field)
    if value is not None and not isinstance(value, str):
        raise not_a_model(shown, f"its MLmodel's {flavor} {field} is {kind_of(value)}, not text")
    return value


def _load_sklearn(files: ModelFiles, mlmodel: MLmodel, uri: str) -> Any:
    """The estimator of an sklearn-flavoured model, warning when versions differ."""
    import sklearn

    trained_with = flavor_text(mlmodel, "sklearn", "sklearn_version", uri)
    if trained_with and trained_with != sklearn.__version__:
        logger.warning(
            "model was saved with scikit-learn %s but %s is installed; predictions may differ",
            trained_with,
            sklearn.__version__,
        )
    pickled = flavor_text(mlmodel, "sklearn", "pickled_model", uri)
    if flavor_text(mlmodel, "sklearn", "serialization_format", uri) in ("cloudpickle", "pickle"):
        if not pickled or "/" in pickled or "\\" in pickled or pickled in (".", ".."):
            raise not_a_model(
                uri, "its MLmodel's sklearn pickled_model is not a file of its folder"
            )
        # What mlflow.sklearn.load_model does for these formats, without importing MLflow.
        import cloudpickle

        with open(os.path.join(files.fetch(pickled), pickled), "rb") as handle:
            return cloudpickle.load(handle)
    import mlflow.sklearn

    return mlflow.sklearn.load_model(files.fetch_all())


def forget_loaded() -> None:
    """Drop what the loaders keep: a server that switched models keeps only the one serving."""
    for loader in (load_compiled, load_profile, load_model):
        loader.cache_clear()
