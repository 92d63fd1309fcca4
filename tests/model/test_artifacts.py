"""A model's files (`model.artifacts`): found locally, their MLmodel read, failures made clear."""

from __future__ import annotations

import tempfile

import pytest
import requests
from mlflow.exceptions import MlflowException

from ride_duration.core.errors import (
    ConfigurationError,
    ModelNotFoundError,
    ModelNotTrustedError,
    TrackingServerUnreachableError,
)
from ride_duration.model import artifacts
from tests.support.troubleshooting import assert_documented


@pytest.mark.parametrize("scheme", ["", "file://"])
def test_a_local_folder_is_read_in_place(tmp_path, monkeypatch, scheme):
    (tmp_path / "MLmodel").write_text("run_id: abc\nflavors:\n  sklearn: {pickled_model: m.pkl}\n")
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    with artifacts.ModelFiles(f"{scheme}{tmp_path}") as files:
        assert files.fetch("MLmodel") == files.fetch_all() == str(tmp_path)
    assert list(temporary.iterdir()) == []
    mlmodel = artifacts.read_mlmodel(str(tmp_path))
    assert mlmodel.run_id == "abc"
    assert mlmodel.flavors == {"sklearn": {"pickled_model": "m.pkl"}}


@pytest.mark.parametrize("content", ["", "flavors:\n"])
def test_an_empty_mlmodel_has_no_flavours_and_no_run(tmp_path, content):
    (tmp_path / "MLmodel").write_text(content)
    assert artifacts.read_mlmodel(str(tmp_path)) == artifacts.MLmodel(flavors={}, run_id=None)


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("run_id: 12345\n", "its MLmodel's run_id is a number, not text"),
        ("run_id: [a, b]\n", "its MLmodel's run_id is a list, not text"),
        ("run_id: {a: 1}\n", "its MLmodel's run_id is a mapping, not text"),
        ("run_id: true\n", "its MLmodel's run_id is true or false, not text"),
        ("run_id: 2024-01-01\n", "its MLmodel's run_id is a date, not text"),
        ("flavors: [sklearn]\n", "its MLmodel's flavors is a list, not a mapping"),
        ("flavors: sklearn\n", "its MLmodel's flavors is text, not a mapping"),
        ("flavors: {sklearn: 1}\n", "its MLmodel's flavor sklearn is a number, not a mapping"),
        ("flavors: {sklearn: null}\n", "its MLmodel's flavor sklearn is empty, not a mapping"),
        ("- run_id\n- flavors\n", "its MLmodel is a list, not a mapping of fields"),
        ("12345\n", "its MLmodel is a number, not a mapping of fields"),
        ("just text\n", "its MLmodel is text, not a mapping of fields"),
        ("run_id: [unclosed\n", "its MLmodel is not YAML (while parsing a flow sequence)"),
        ("a: b: c\n", "its MLmodel is not YAML (mapping values are not allowed here)"),
        ("flavors: {}\nrun_id: *nothing\n", "its MLmodel is not YAML ("),
    ],
)
def test_an_mlmodel_of_any_other_shape_is_a_one_line_refusal(tmp_path, content, why):
    """What the loader reads of it, and the run id when the file mentions one."""
    (tmp_path / "MLmodel").write_text(content)
    readers = [artifacts.read_mlmodel] + [artifacts.read_run_id] * ("run_id" in content)
    for read in readers:
        with pytest.raises(ModelNotFoundError) as error:
            read(str(tmp_path))
        assert str(error.value).startswith(f"no MLflow model at {tmp_path}: {why}")
        assert "\n" not in str(error.value)
        assert len(str(error.value)) < 300
        assert_documented(f"error: {error.value}")


def test_an_mlmodel_that_is_not_utf8_is_a_one_line_refusal(tmp_path):
    (tmp_path / "MLmodel").write_bytes(b"run_id: \xff\xfe\n")
    with pytest.raises(ModelNotFoundError, match=r"its MLmodel is not UTF-8 text$") as error:
        artifacts.read_run_id(str(tmp_path))
    assert_documented(f"error: {error.value}")


def test_a_folder_without_mlmodel_is_no_model(tmp_path):
    with pytest.raises(ModelNotFoundError, match="it has no MLmodel") as error:
        artifacts.read_mlmodel(str(tmp_path))
    assert_documented(f"error: {error.value}")


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
        (ConfigurationError("needs MLflow"), ConfigurationError),
        (ValueError("a bug"), ValueError),
    ],
)
def test_failures_become_one_actionable_error_and_bugs_stay_bugs(error, becomes):
    translated = artifacts.as_scoring_error(error, "models:/m/1")
    assert type(translated) is becomes
    if becomes is ModelNotFoundError:
        assert str(translated).startswith("cannot find model models:/m/1: ")


RUN = "2cd527170d754944bccd4ae48a9d80ae"


@pytest.mark.parametrize(
    ("content", "run_id"),
    [
        (f"artifact_path: x\nrun_id: {RUN}\nutc_time_created: '2026'\n", RUN),  # MLflow's
        (f"run_id: {RUN}\n", RUN),
        (f"run_id: '{RUN}'\n", RUN),  # quoted: parsed
        ("run_id: null\n", None),
        ("run_id: r42\n", "r42"),  # not 32 hex digits: parsed
        (f"run_id: {RUN}\nrun_id: {RUN[::-1]}\n", RUN[::-1]),  # twice: YAML's last one
        (f"'run_id': other\nrun_id: {RUN}\n", RUN),
        (f"{{run_id: {RUN}}}\n", RUN),  # flow style: parsed
        (f"flavors:\n  x:\n    run_id: {RUN}\n", None),  # not the top level
        ("flavors: {}\n", None),
    ],
)
def test_the_run_id_is_what_yaml_reads(tmp_path, content, run_id):
    (tmp_path / "MLmodel").write_text(content)
    assert artifacts.read_run_id(str(tmp_path)) == run_id
    assert artifacts.read_run_id(str(tmp_path)) == artifacts.read_mlmodel(str(tmp_path)).run_id


@pytest.mark.parametrize(
    ("content", "run_id"),
    [(f"artifact_path: x\nflavors: {{}}\nrun_id: {RUN}\n", RUN), ("flavors: {}\n", "None")],
    ids=["mlflow's own line", "no run"],
)
def test_mlflows_own_run_id_line_or_none_is_read_without_importing_yaml(tmp_path, content, run_id):
    import subprocess
    import sys

    (tmp_path / "MLmodel").write_text(content)
    code = (
        "import sys; from ride_duration.model.artifacts import read_run_id; "
        f"print(read_run_id({str(tmp_path)!r}), 'yaml' in sys.modules)"
    )
    answer = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert answer.stdout.split() == [run_id, "False"], answer.stderr


@pytest.mark.parametrize("uri", ["runs:/abc/model", "mlflow-artifacts:/1/abc", "models:/m-1"])
def test_without_mlflow_what_only_mlflow_reads_is_refused_in_one_line(not_installed, uri):
    not_installed("mlflow")
    with pytest.raises(ConfigurationError, match="needs MLflow, which the serving") as error:
        artifacts.ModelFiles(uri).fetch_all()
    assert "\n" not in str(error.value)


def test_without_mlflow_a_failure_is_translated_without_importing_it(not_installed, monkeypatch):
    import sys

    not_installed("mlflow")
    for name in [m for m in sys.modules if m == "mlflow" or m.startswith("mlflow.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://user:pw@127.0.0.1:5000")
    translated = artifacts.as_scoring_error(ConnectionRefusedError("refused"), "models:/m/1")
    assert str(translated).startswith("MLflow tracking server http://127.0.0.1:5000 did not")
    assert type(artifacts.as_scoring_error(OSError("gone"), "m")) is ModelNotFoundError
    assert "mlflow" not in sys.modules
