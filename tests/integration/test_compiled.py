"""The compiled forms in every way of serving, against the session's MLflow server and S3.

`train.py` (the session's `trained` model) logs `forest.npz` beside the pickle; batch, the web
service's core and the stream handler then predict with numpy alone, bit for bit what
scikit-learn gives with n_jobs=1. A version logged without it is scored with scikit-learn until
`python -m ride_duration.compile` adds it. The linear baseline (`trained_linear`) gets its
compiled form (`linear.npz`) the same way, served from either install bit for bit.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import mlflow
import mlflow.sklearn
import numpy as np
import pyarrow.parquet as pq
import pytest

from ride_duration.core.months import Month
from ride_duration.data import features
from ride_duration.data.sources import read_trips
from ride_duration.forest import npz
from tests.conftest import REPO
from tests.integration.conftest import (
    LINEAR_MODEL,
    TEMPLATE,
    Install,
    Services,
    Trained,
    run_cli,
)
from tests.support.rides import as_rides, prepared
from tests.support.tlc_fake import file_name


def one_job(pipeline):
    """scikit-learn's exact reference: the pipeline with its forest on one job."""
    reference = copy.deepcopy(pipeline)
    reference.steps[-1][1].n_jobs = 1
    return reference


def month_trips(input_dir: Path, month: int):
    uri = str(input_dir / file_name("green", 2021, month))
    return read_trips(uri, "green", Month(2021, month), 500_000).table


@pytest.fixture(scope="module")
def pipeline(services: Services, trained: Trained):
    mlflow.set_tracking_uri(services.tracking_uri)
    return mlflow.sklearn.load_model(f"models:/ride-duration/{trained.version}")


def test_train_logs_the_compiled_forest_beside_the_pickle(services, trained, tmp_path):
    mlflow.set_tracking_uri(services.tracking_uri)
    folder = mlflow.artifacts.download_artifacts(
        f"models:/ride-duration/{trained.version}", dst_path=str(tmp_path)
    )
    names = {p.name for p in Path(folder).iterdir()}
    assert {"MLmodel", "model.pkl", npz.FILE_NAME} <= names
    compiled = npz.load(Path(folder) / npz.FILE_NAME)
    assert compiled.table is not None


def test_a_scored_month_is_bit_for_bit_scikit_learn_with_one_job(
    services: Services, trained: Trained, input_dir: Path, tmp_path: Path, pipeline
):
    env = {**services.env, "INPUT_URI_TEMPLATE": str(input_dir / TEMPLATE)}
    env["OUTPUT_ROOT"] = str(tmp_path / "out")
    result = run_cli("score.py", "green", "2021", "3", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "predicted with compiled forest" in result.stdout + result.stderr
    partition = tmp_path / "out/taxi_type=green/year=2021/month=03"
    written = pq.read_table(partition / "predictions.parquet")
    expected = one_job(pipeline).predict(features.feature_records(month_trips(input_dir, 3)))
    assert written["predicted_duration"].to_numpy().tobytes() == expected.tobytes()
    manifest = json.loads((partition / "_manifest.json").read_text())
    assert manifest["model"]["scoring"] == "compiled forest"
    assert manifest["model"]["run_id"] == trained.run_id


def served_in_a_fresh_process(python: Path | str, env: dict[str, str], rides: list[dict]) -> dict:
    """What a fresh process of `python` serves for `rides` with MODEL_URI in `env`, as a web
    worker or a Lambda container starts: its path, its raw predictions (JSON keeps a float's
    every bit) and which of scikit-learn, scipy and MLflow it imported."""
    script = f"""
import json, sys
from ride_duration.model.service import load_for_serving
from ride_duration.core.settings import Settings
model = load_for_serving(Settings.from_env())
print(json.dumps({{
    "path": model.predictor.path,
    "predictions": model.predict_rides({rides!r}).tolist(),
    "heavy": sorted(m for m in sys.modules if m.split(".")[0] in ("sklearn", "scipy", "mlflow")),
}}))
"""
    result = subprocess.run(
        [str(python), "-c", script], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_online_core_loads_it_without_scikit_learn_or_scipy(services: Services, trained):
    """A fresh process, as a web worker or a Lambda container starts."""
    rides = [
        {"PULocationID": 130, "DOLocationID": 205, "trip_distance": 3.66},
        {"PULocationID": None, "DOLocationID": 43, "trip_distance": 0.0},
    ]
    answer = served_in_a_fresh_process(
        sys.executable, {**services.env, "MODEL_URI": "models:/ride-duration@production"}, rides
    )
    assert answer["path"] == "compiled forest"
    assert answer["heavy"] == []
    mlflow.set_tracking_uri(services.tracking_uri)
    reference = one_job(mlflow.sklearn.load_model(f"models:/ride-duration/{trained.version}"))
    expected = reference.predict(
        [{"PU_DO": "130_205", "trip_distance": 3.66}, {"PU_DO": "-1_43", "trip_distance": 0.0}]
    )
    assert np.array(answer["predictions"]).tobytes() == expected.tobytes()


def test_a_version_without_it_is_scored_with_scikit_learn_until_compiled(
    services: Services, trained: Trained, input_dir: Path, tmp_path: Path, pipeline
):
    mlflow.set_tracking_uri(services.tracking_uri)
    mlflow.set_experiment("uncompiled")
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            serialization_format="cloudpickle",
            registered_model_name="uncompiled",
        )
        mlflow.log_params({"taxi_type": "green", "train_month": "2021-01"})
    uri = f"models:/uncompiled/{info.registered_model_version}"
    env = {
        **services.env,
        "INPUT_URI_TEMPLATE": str(input_dir / TEMPLATE),
        "OUTPUT_ROOT": str(tmp_path),
        "MODEL_URI": uri,
    }

    def scored(root: str) -> tuple[str, bytes]:
        run = run_cli(
            "score.py", "green", "2021", "4", "--output-root", root, env=env, cwd=tmp_path
        )
        assert run.returncode == 0, run.stderr[-3000:]
        [path] = Path(root).glob("taxi_type=*/year=*/month=*/*.parquet")  # the current set
        [manifest] = Path(root).rglob("_manifest.json")
        values = pq.read_table(path)["predicted_duration"].to_numpy().tobytes()
        return json.loads(manifest.read_text())["model"]["scoring"], values

    # Inside OUTPUT_ROOT, experiments go in folders whose names start with _.
    before_path, before = scored(str(tmp_path / "_before"))
    assert before_path == "scikit-learn (DictVectorizer fast path)"

    compiled = subprocess.run(
        [sys.executable, "-m", "ride_duration.compile", uri],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert compiled.returncode == 0, compiled.stderr[-3000:]
    assert "bit for bit equal to scikit-learn" in compiled.stdout
    assert " training rows" in compiled.stdout

    after_path, after = scored(str(tmp_path / "_after"))
    assert after_path == "compiled forest"
    assert after == before  # scikit-learn (n_jobs=1 per block) and the compiled form agree
    expected = one_job(pipeline).predict(features.feature_records(month_trips(input_dir, 4)))
    assert after == expected.tobytes()


@pytest.mark.parametrize("regressor", ["LinearRegression", "Ridge"])
def test_the_compile_command_compiles_a_linear_regression_and_refuses_what_it_cannot(
    services: Services, tmp_path: Path, regressor: str
):
    import sklearn.linear_model
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.pipeline import make_pipeline

    mlflow.set_tracking_uri(services.tracking_uri)
    mlflow.set_experiment("linear")
    records = [{"PU_DO": "1_2", "trip_distance": float(d)} for d in range(20)]
    model = getattr(sklearn.linear_model, regressor)()
    linear = make_pipeline(DictVectorizer(), model).fit(records, list(range(20)))
    name = f"lin-{regressor}"
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            linear, name="model", serialization_format="cloudpickle", registered_model_name=name
        )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ride_duration.compile",
            f"models:/{name}/{info.registered_model_version}",
        ],
        env=services.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if regressor == "LinearRegression":
        assert result.returncode == 0, result.stderr[-3000:]
        assert "bit for bit equal to scikit-learn on " in result.stdout
        assert result.stdout.strip().endswith("; logged as linear.npz")
        return
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {name}/{info.registered_model_version} is not a DictVectorizer + random forest "
        "or LinearRegression pipeline, so it has no compiled form: the full install or image "
        "serves it with scikit-learn"
    )


def test_train_logs_a_linear_models_compiled_form_beside_the_pickle(
    services, trained_linear, tmp_path
):
    mlflow.set_tracking_uri(services.tracking_uri)
    folder = mlflow.artifacts.download_artifacts(
        f"models:/{LINEAR_MODEL}/{trained_linear.version}", dst_path=str(tmp_path)
    )
    assert {"MLmodel", "model.pkl", "linear.npz"} <= {p.name for p in Path(folder).iterdir()}
    assert type(npz.load(Path(folder) / "linear.npz", "linear")).__name__ == "CompiledLinear"


def test_the_online_core_predicts_the_linear_model_from_each_install_bit_for_bit(
    services: Services, install: Install, linear_sklearn
):
    """The raw predictions (JSON keeps a float's every bit) of a fresh process of each install,
    as a web worker or a Lambda container starts: scikit-learn's own, without it."""
    rides = [*as_rides(prepared(2021, 3, 600).slice(0, 500))]
    rides.append({"PULocationID": None, "DOLocationID": 43, "trip_distance": 0.0})
    rides.append({"PULocationID": 130, "DOLocationID": 205, "trip_distance": 1e30})
    answer = served_in_a_fresh_process(
        install.python,
        install.env({**services.env, "MODEL_URI": f"models:/{LINEAR_MODEL}@production"}),
        rides,
    )
    assert answer["path"] == "compiled linear model"
    assert answer["heavy"] == []
    expected = np.asarray(linear_sklearn(rides), dtype=np.float64)
    assert np.array(answer["predictions"]).tobytes() == expected.tobytes()
