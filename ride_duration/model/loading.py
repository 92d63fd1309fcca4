"""Loading a resolved model once per process.

Its compiled forest when it has one (numpy alone), else its pickle through MLflow's flavour.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any

from ride_duration.core.uris import display_uri
from ride_duration.forest.compiled import CompiledForest
from ride_duration.model.artifacts import as_scoring_error, download, read_mlmodel

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=8)
def load_compiled(resolved_uri: str, location: str | None = None) -> CompiledForest | None:
    """The model's compiled forest (`forest.npz` beside its pickle), or None when it has none.

    Plain arrays, read with numpy and no pickle: loading it runs no code and needs neither
    scikit-learn nor MLflow. A file that does not load is reported and the pickle is used.
    """
    from ride_duration.forest import npz

    try:
        folder = download(location or resolved_uri, only=("MLmodel", npz.FILE_NAME))
    except Exception as error:  # noqa: BLE001 - translated to a clear error, or re-raised
        raise as_scoring_error(error, resolved_uri) from None
    path = os.path.join(folder, npz.FILE_NAME)
    if not os.path.isfile(path):
        return None
    try:
        return npz.load(path)
    except ValueError as error:
        logger.warning(
            "%s of %s does not load (%s): scoring with scikit-learn",
            path,
            display_uri(resolved_uri),
            error,
        )
        return None


@functools.lru_cache(maxsize=8)
def load_model(resolved_uri: str, location: str | None = None) -> Any:
    """The model behind a resolved URI, loaded once per process and reused across months.

    `location` is where its files are, when known. A scikit-learn model comes back as the raw
    estimator (a Pipeline, so scoring can take its fast path); any other flavour comes back as
    an MLflow pyfunc model.
    """
    try:
        local_path = download(location or resolved_uri)
        mlmodel = read_mlmodel(local_path)
        if "sklearn" in mlmodel.flavors:
            return _load_sklearn(local_path, mlmodel.flavors["sklearn"])
        import mlflow.pyfunc

        return mlflow.pyfunc.load_model(local_path)
    except Exception as error:  # noqa: BLE001 - translated to a clear error, or re-raised
        raise as_scoring_error(error, resolved_uri) from None


def _load_sklearn(local_path: str, flavor: dict) -> Any:
    """The estimator of an sklearn-flavoured model folder, warning when versions differ."""
    import sklearn

    trained_with = flavor.get("sklearn_version")
    if trained_with and trained_with != sklearn.__version__:
        logger.warning(
            "model was saved with scikit-learn %s but %s is installed; predictions may differ",
            trained_with,
            sklearn.__version__,
        )
    if flavor.get("serialization_format") in ("cloudpickle", "pickle"):
        # What mlflow.sklearn.load_model does for these formats, without importing MLflow.
        import cloudpickle

        with open(os.path.join(local_path, flavor["pickled_model"]), "rb") as handle:
            return cloudpickle.load(handle)
    import mlflow.sklearn

    return mlflow.sklearn.load_model(local_path)
