"""A model's files (`model.artifacts`): found locally, their MLmodel read, failures made clear."""

from __future__ import annotations

import pytest
import requests
from mlflow.exceptions import MlflowException

from ride_duration.core.errors import (
    ModelNotFoundError,
    ModelNotTrustedError,
    TrackingServerUnreachableError,
)
from ride_duration.model import artifacts


def test_a_local_folder_is_read_in_place(tmp_path):
    (tmp_path / "MLmodel").write_text("run_id: abc\nflavors:\n  sklearn: {pickled_model: m.pkl}\n")
    assert artifacts.download(str(tmp_path)) == str(tmp_path)
    mlmodel = artifacts.read_mlmodel(str(tmp_path))
    assert mlmodel.run_id == "abc"
    assert mlmodel.flavors == {"sklearn": {"pickled_model": "m.pkl"}}


@pytest.mark.parametrize("content", ["", "flavors:\n"])
def test_an_empty_mlmodel_has_no_flavours_and_no_run(tmp_path, content):
    (tmp_path / "MLmodel").write_text(content)
    assert artifacts.read_mlmodel(str(tmp_path)) == artifacts.MLmodel(flavors={}, run_id=None)


def test_a_folder_without_mlmodel_is_no_model(tmp_path):
    with pytest.raises(ModelNotFoundError, match="it has no MLmodel"):
        artifacts.read_mlmodel(str(tmp_path))


def refused() -> Exception:
    try:
        raise ConnectionRefusedError("Connection refused")
    except ConnectionRefusedError as cause:
        try:
            raise MlflowException("API request failed") from cause
        except MlflowException as error:
            return error


@pytest.mark.parametrize(
    ("error", "becomes"),
    [
        (refused(), TrackingServerUnreachableError),
        (requests.ConnectionError("down"), TrackingServerUnreachableError),
        (MlflowException("Max retries exceeded with url: /api"), TrackingServerUnreachableError),
        (MlflowException("RESOURCE_DOES_NOT_EXIST: no such model"), ModelNotFoundError),
        (FileNotFoundError("no such file"), ModelNotFoundError),
        (ModelNotTrustedError("not trusted"), ModelNotTrustedError),
        (ValueError("a bug"), ValueError),
    ],
)
def test_failures_become_one_actionable_error_and_bugs_stay_bugs(error, becomes):
    translated = artifacts.as_scoring_error(error, "models:/m/1")
    assert type(translated) is becomes
    if becomes is ModelNotFoundError:
        assert str(translated).startswith("cannot find model models:/m/1: ")
