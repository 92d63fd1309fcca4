"""Resolving a model URI (`model.resolve`): trusted locations only, pinned to one version.

The registry and runs of a real tracking server are tests/integration/test_registry.py's and
test_score.py's; these are the rules, on model folders.
"""

from __future__ import annotations

import sqlite3

import pytest

from ride_duration.core.errors import ConfigurationError, ModelNotFoundError, ModelNotTrustedError
from ride_duration.model.resolve import ModelRef, check_trusted, resolve_model
from tests.support.registry_store import sqlite_registry


@pytest.fixture
def folder(tmp_path):
    model = tmp_path / "models" / "ride"
    model.mkdir(parents=True)
    (model / "MLmodel").write_text("run_id: r42\nflavors: {}\n")
    return model


@pytest.mark.parametrize(
    ("model", "label"),
    [
        (ModelRef(uri="u", resolved_uri="models:/m/3", name="m", version="3", run_id="r"), "m/3"),
        (ModelRef(uri="u", resolved_uri="runs:/r/model", run_id="r"), "r"),
        (ModelRef(uri="u", resolved_uri="https://user:pw@host/m"), "https://host/m"),
    ],
)
def test_a_models_label(model, label):
    assert model.label == label


def test_a_trusted_folder_resolves_to_itself_with_the_run_that_logged_it(folder):
    model = resolve_model(f" {folder} ", (str(folder.parent),))
    assert model == ModelRef(uri=str(folder), resolved_uri=str(folder), run_id="r42")


@pytest.mark.parametrize(
    ("location", "prefixes"),
    [
        ("/srv/models/../../tmp/x", ("/srv/models",)),
        ("/srv/models-scratch/x", ("/srv/models",)),
        ("s3://company-models-public/x", ("s3://company-models",)),
        ("/anywhere", ()),
    ],
)
def test_a_location_outside_the_trusted_prefixes_is_refused(location, prefixes):
    with pytest.raises(ModelNotTrustedError, match="not in a trusted location"):
        check_trusted(location, prefixes)


def test_a_refusal_of_a_registered_models_files_names_both():
    with pytest.raises(ModelNotTrustedError, match="models:/m/1 has its files at /tmp/x"):
        check_trusted("/tmp/x", ("models:/",), files_of="models:/m/1")


@pytest.mark.parametrize(
    ("uri", "error"),
    [
        ("https://user:secret@host/model", ConfigurationError),
        ("https://host/model?X-Amz-Signature=abc", ConfigurationError),
        ("/not/trusted", ModelNotTrustedError),
    ],
)
def test_a_uri_with_credentials_or_outside_the_prefixes_is_refused_before_any_read(uri, error):
    with pytest.raises(error):
        resolve_model(uri, ("models:/", "https://host/model"))


@pytest.mark.parametrize("uri", ["models:/ride-duration@production", "runs:/r1/model"])
@pytest.mark.parametrize("relative", [True, False])
def test_a_sqlite_store_that_is_not_there_is_named_and_not_created(
    tmp_path, monkeypatch, uri, relative
):
    """From another folder, the default sqlite:///mlflow.db names no store: MLflow would create
    an empty one there and say only that the model is not found."""
    monkeypatch.chdir(tmp_path)
    tracking_uri = "sqlite:///mlflow.db" if relative else f"sqlite:///{tmp_path}/mlflow.db"
    with pytest.raises(ModelNotFoundError) as raised:
        resolve_model(uri, tracking_uri=tracking_uri)
    assert f"MLFLOW_TRACKING_URI {tracking_uri} names no MLflow store" in str(raised.value)
    assert ("in the current folder" in str(raised.value)) is relative
    assert list(tmp_path.iterdir()) == []


def test_a_trusted_folder_without_a_model_is_not_found(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no MLmodel"):
        resolve_model(str(tmp_path), (str(tmp_path),))


@pytest.fixture
def sqlite_store(tmp_path, folder):
    """A sqlite store whose registry has ride-duration/1 at `folder` (its production alias)."""
    return sqlite_registry(
        tmp_path / "mlflow.db",
        [("ride-duration", 1, "r42", str(folder), None, "None")],
        [("ride-duration", "production", 1)],
    )


@pytest.mark.parametrize(
    ("uri", "error", "match"),
    [
        ("models:/ride-duration@production", None, None),
        ("models:/ride-duration/1", None, None),
        ("models:/ride-duration@staging", ModelNotFoundError, "in the registry at sqlite:///"),
        ("models:/ride-duration/7", ModelNotFoundError, "in the registry at sqlite:///"),
        ("models:/m-0123", ConfigurationError, "resolving models:/m-0123 needs MLflow"),
        ("runs:/r42/model", ConfigurationError, "resolving runs:/r42/model needs MLflow"),
    ],
)
def test_without_mlflow_the_registry_is_read_directly_or_refused_in_one_line(
    not_installed, sqlite_store, folder, uri, error, match
):
    not_installed("mlflow")
    prefixes = ("models:/", "runs:/", str(folder.parent))
    if error is None:
        model = resolve_model(uri, prefixes, tracking_uri=sqlite_store)
        found = (model.label, model.location, model.run_id)
        assert found == ("ride-duration/1", str(folder), "r42")
    else:
        with pytest.raises(error, match=match):
            resolve_model(uri, prefixes, tracking_uri=sqlite_store)


@pytest.fixture
def store_elsewhere(tmp_path, monkeypatch):
    """A sqlite store in srv/ whose experiment records srv/mlruns/1, with version 1 there and
    version 2 registered from a folder outside it; the current folder is another one."""
    srv = tmp_path / "srv"
    inside = srv / "mlruns" / "1" / "models" / "m-1" / "artifacts"
    outside = tmp_path / "scratch" / "model"
    for folder in (inside, outside):
        folder.mkdir(parents=True)
        (folder / "MLmodel").write_text("flavors: {}\n")
    uri = sqlite_registry(
        srv / "mlflow.db",
        [
            ("ride", 1, "r1", "models:/m-1", str(inside), "None"),
            ("ride", 2, "r2", str(outside), None, "None"),
        ],
        [],
    )
    with sqlite3.connect(srv / "mlflow.db") as db:
        db.execute("CREATE TABLE experiments (experiment_id INT, artifact_location TEXT)")
        db.execute("INSERT INTO experiments VALUES (1, ?)", (str(srv / "mlruns" / "1"),))
    monkeypatch.chdir(tmp_path / "scratch")
    return uri, inside, outside


def test_by_default_the_stores_artifact_locations_are_trusted_from_any_folder(store_elsewhere):
    uri, inside, _ = store_elsewhere
    model = resolve_model("models:/ride/1", tracking_uri=uri)
    assert model.location == str(inside)
    assert resolve_model(str(inside), tracking_uri=uri).resolved_uri == str(inside)


def test_by_default_a_version_whose_files_are_outside_the_store_is_refused(store_elsewhere):
    uri, inside, outside = store_elsewhere
    with pytest.raises(ModelNotTrustedError) as error:
        resolve_model("models:/ride/2", tracking_uri=uri)
    assert str(error.value).startswith(
        f"model models:/ride/2 has its files at {outside}, which is not in a trusted location "
        f"(models:/, runs:/, {inside.parents[2]}): "
    )


def test_trusted_model_prefixes_replaces_the_stores_locations(store_elsewhere):
    uri, _, outside = store_elsewhere
    with pytest.raises(ModelNotTrustedError, match=r"\(models:/\)"):
        resolve_model("models:/ride/1", ("models:/",), tracking_uri=uri)
    assert (
        resolve_model("models:/ride/2", ("models:/", str(outside)), tracking_uri=uri).version == "2"
    )


def test_a_refusal_lists_a_few_trusted_locations_and_counts_the_rest():
    with pytest.raises(ModelNotTrustedError) as error:
        check_trusted("/x", tuple(f"/srv/{n}" for n in range(10)))
    assert "(/srv/0, /srv/1, /srv/2, /srv/3, /srv/4, /srv/5, and 4 more)" in str(error.value)
