"""The serving install (`make serving-env`) as built: what it holds, and what it refuses.

The web and stream tests (test_web.py, test_stream.py) run once from each install and check
the answers bit for bit against scikit-learn's; these are the install's own promises.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from packaging.utils import canonicalize_name

from scripts.install_serving import distribution_name
from tests.conftest import REPO
from tests.integration.conftest import (
    TEMPLATE,
    Install,
    Services,
    Trained,
    run_cli,
    serving_install,
)
from tests.support.servers import free_port, http_ok, running

FULL_STACK = ["sklearn", "scipy", "pandas", "pyarrow", "mlflow", "prefect", "fsspec", "s3fs"]
RIDE = {"ride": {"PULocationID": 130, "DOLocationID": 205, "trip_distance": 3.66}, "ride_id": 1}


def serving_code() -> list[str]:
    """What the serving role runs: the Makefile's SERVING_CODE, which make serving-env compiles."""
    makefile = (REPO / "Makefile").read_text().splitlines()
    return next(line for line in makefile if line.startswith("SERVING_CODE :=")).split()[2:]


@pytest.fixture(scope="module")
def serving() -> Install:
    return serving_install()


def run(python: Path, code: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, timeout=120, **kwargs
    )


def one_ride(python: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`python lambda_function.py` with one ride on stdin, in a test run (nothing written)."""
    return subprocess.run(
        [str(python), "lambda_function.py"],
        input=json.dumps(RIDE),
        env={**env, "TEST_RUN": "True"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_it_holds_the_serving_requirements_at_the_locked_versions_and_nothing_else(
    serving: Install,
):
    listing = run(
        serving.python,
        "import importlib.metadata as m, json; "
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))",
    )
    installed = {
        canonicalize_name(name): version for name, version in json.loads(listing.stdout).items()
    }
    assert installed.pop("ride-duration")  # the package, editable
    lock = json.loads((REPO / "Pipfile.lock").read_text())["default"]
    locked = {canonicalize_name(name): spec["version"] for name, spec in lock.items()}
    assert {name: f"=={version}" for name, version in installed.items()} == {
        name: locked[name] for name in installed
    }
    wheelhouse = serving.bin.parent / "wheelhouse"
    assert set(installed) == {
        distribution_name(file)
        for file in wheelhouse.iterdir()
        if not file.name.startswith("ride_duration-")
    }
    needed = {"numpy", "pyyaml", "flask", "gunicorn", "boto3", "awslambdaric", "prometheus-client"}
    assert needed <= set(installed)
    assert "pip" not in installed  # the venv was filled from outside (`pip --python`)
    for module in FULL_STACK:
        assert run(serving.python, f"import {module}").returncode != 0, f"{module} importable"


def test_its_code_and_packages_are_byte_compiled(serving: Install):
    """No cold start compiles: every module of the code and the packages has its .pyc."""
    code = (
        "import importlib.util, pathlib, sys, sysconfig\n"
        "roots = [pathlib.Path(p) for p in sys.argv[1:]]\n"
        "roots.append(pathlib.Path(sysconfig.get_paths()['purelib']))\n"
        "sources = [p for r in roots for p in ([r] if r.is_file() else r.rglob('*.py'))]\n"
        "missing = [str(p) for p in sources\n"
        "           if not pathlib.Path(importlib.util.cache_from_source(p)).is_file()]\n"
        "print(len(sources), missing[:5])\n"
    )
    result = subprocess.run(
        [str(serving.python), "-c", code, *(str(REPO / path) for path in serving_code())],
        capture_output=True,
        text=True,
        timeout=120,
    )
    count, missing = result.stdout.split(" ", 1)
    assert int(count) > 1000
    assert missing.strip() == "[]", result.stdout + result.stderr


def test_the_full_install_serves_a_ride_without_loading_the_full_stack(
    services: Services, trained: Trained, tmp_path: Path
):
    """One ride needs numpy alone: even where pandas, pyarrow, scikit-learn and MLflow are
    installed, the handler's first answer loads none of them."""
    code = (
        "import json, sys\n"
        "import lambda_function\n"
        "from ride_duration.online.stream import kinesis_event\n"
        f"event = kinesis_event([{json.dumps(json.dumps(RIDE))}.encode()])\n"
        "answer = lambda_function.lambda_handler(event, None)\n"
        f"loaded = [m for m in {FULL_STACK!r} if m in sys.modules]\n"
        "print(json.dumps([answer['predictions'][0]['version'], loaded]))\n"
    )
    env = {**services.env, "TEST_RUN": "True", "MODEL_URI": "models:/ride-duration@production"}
    result = run(Path(sys.executable), code, env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    version, loaded = json.loads(result.stdout.splitlines()[-1])
    assert version == f"ride-duration/{trained.version}"
    assert loaded == []


@pytest.mark.parametrize(
    ("rides", "code", "failed"),
    [
        ([RIDE], 0, 0),
        ([RIDE, {**RIDE, "ride": {**RIDE["ride"], "trip_distance": -1}, "ride_id": 2}], 1, 1),
        (["not json"], 1, 1),
    ],
    ids=["every record scored", "one record failed", "every record failed"],
)
def test_the_local_lambda_run_exits_non_zero_when_a_record_failed(
    services: Services, trained: Trained, rides: list, code: int, failed: int
):
    lines = "\n".join(ride if isinstance(ride, str) else json.dumps(ride) for ride in rides)
    env = {**services.env, "TEST_RUN": "True", "MODEL_URI": "models:/ride-duration@production"}
    result = subprocess.run(
        [sys.executable, "lambda_function.py"],
        input=lines + "\n",
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == code, result.stderr[-3000:]
    answer = json.loads(result.stdout.splitlines()[-1])
    assert len(answer["batchItemFailures"]) == failed


@pytest.fixture(scope="module")
def uncompiled(services: Services, trained: Trained, tmp_path_factory) -> Path:
    """The trained model's folder without its compiled forest: a model only scikit-learn runs."""
    mlflow.set_tracking_uri(services.tracking_uri)
    folder = Path(
        mlflow.artifacts.download_artifacts(
            f"models:/ride-duration/{trained.version}",
            dst_path=str(tmp_path_factory.mktemp("uncompiled")),
        )
    )
    (folder / "forest.npz").unlink()
    return folder


def one_line_error(result: subprocess.CompletedProcess) -> str:
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return errors[0]


@pytest.mark.parametrize("role", ["web", "lambda"])
def test_a_model_without_a_compiled_forest_is_refused_at_start(
    services: Services, serving: Install, uncompiled: Path, role: str
):
    env = serving.env(
        {**services.env, "MODEL_URI": str(uncompiled), "TRUSTED_MODEL_PREFIXES": str(uncompiled)}
    )
    if role == "web":
        command = [str(serving.bin / "gunicorn"), "--bind", f"127.0.0.1:{free_port()}"]
        command.append("predict:app")
        result = subprocess.run(
            command, env=env, cwd=REPO, capture_output=True, text=True, timeout=120
        )
    else:
        result = one_ride(serving.python, env)
    assert result.returncode == 2
    assert one_line_error(result) == (
        f"error: model {uncompiled} has no compiled form, and this install has no "
        "scikit-learn: a random forest or a linear regression registered in MLflow is compiled, "
        "in the full install, with `python -m ride_duration.compile models:/NAME/VERSION`; any "
        "other model is served by the full install or image"
    )


@pytest.mark.parametrize(
    ("model_uri", "says"),
    [
        ("runs:/{run_id}/model", "error: resolving runs:/{run_id}/model needs MLflow"),
        ("models:/ride-duration@no-such-alias", "error: cannot find model models:/ride-duration"),
    ],
)
def test_what_needs_mlflow_or_is_not_registered_is_refused_in_one_line(
    services: Services, trained: Trained, serving: Install, model_uri: str, says: str
):
    model_uri, says = (text.format(run_id=trained.run_id) for text in (model_uri, says))
    result = one_ride(serving.python, serving.env({**services.env, "MODEL_URI": model_uri}))
    assert result.returncode == 2
    assert one_line_error(result).startswith(says)


@pytest.fixture(scope="module")
def served_artifacts(services: Services, input_dir: Path, tmp_path_factory) -> Iterator[str]:
    """An `mlflow server` as its defaults run it: the model's files served by the server
    itself (`mlflow-artifacts:/` locations), with train.py's model registered in it."""
    workdir = tmp_path_factory.mktemp("served")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri"]
    command += [f"sqlite:///{workdir / 'mlflow.db'}", "--artifacts-destination"]
    command += [str(workdir / "artifacts"), "--host", "127.0.0.1", "--port", str(port)]
    with running(
        [*command, "--workers", "1"],
        env=services.env,
        ready=http_ok(f"{url}/health"),
        log=workdir / "mlflow.log",
        timeout=120,
    ):
        env = {
            **services.env,
            "MLFLOW_TRACKING_URI": url,
            "INPUT_URI_TEMPLATE": str(input_dir / TEMPLATE),
        }
        trained = run_cli("train.py", "green", "2021", "1", env=env, cwd=workdir)
        assert trained.returncode == 0, trained.stderr[-3000:]
        yield url


def test_a_model_whose_files_the_tracking_server_serves_is_served_the_same(
    services: Services, serving: Install, served_artifacts: str
):
    """The registry says `mlflow-artifacts:/...`: the serving install reads those files over
    the server's REST API, as MLflow would, and answers what the full install answers."""
    env = {
        **services.env,
        "MLFLOW_TRACKING_URI": served_artifacts,
        "MODEL_URI": "models:/ride-duration@production",
        "TRUSTED_MODEL_PREFIXES": "models:/,mlflow-artifacts:/",
    }
    answers = []
    for python in (serving.python, Path(sys.executable)):
        result = one_ride(python, env)
        assert result.returncode == 0, result.stderr[-3000:]
        [prediction] = json.loads(result.stdout)["predictions"]
        answers.append((prediction["version"], prediction["prediction"]["ride_duration"]))
    assert answers[0] == answers[1]
    assert answers[0][0] == "ride-duration/1"
