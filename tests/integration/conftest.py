"""Real servers for the integration tests, started once per session on 127.0.0.1.

- an S3-compatible moto server, holding trip files, predictions and MLflow's model artifacts;
- an `mlflow server` with a sqlite backend whose artifact root is on that S3 server;
- a Prefect API through `prefect_test_harness`, shared with the CLI subprocesses;
- for the tests of deployments, a `prefect server start` of its own with the documented deployments
  and two process workers.
Every test here is marked `integration`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from tests.conftest import REPO
from tests.support.servers import free_port, http_ok, running, stop, wait_until_ready
from tests.support.tlc_fake import file_name, make_trips, write_trips

TRAIN_MONTHS = [(2021, 1), (2021, 2), (2021, 3), (2021, 4)]
INPUT_BUCKET = "tlc-trips"
OUTPUT_BUCKET = "predictions"
ARTIFACT_BUCKET = "mlflow-artifacts"
TEMPLATE = "{taxi_type}_tripdata_{year:04d}-{month:02d}.parquet"


# The longest modules go first, so that the workers of `make test` finish together (longest first
# is the usual greedy schedule; tests/conftest.py keeps a module on one worker); the rest keep
# their order.
LONGEST_FIRST = ["test_docs", "test_deployments", "test_ui", "test_local_prefect", "test_image"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        module = item.path.stem
        return LONGEST_FIRST.index(module) if module in LONGEST_FIRST else len(LONGEST_FIRST)

    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)
    items.sort(key=lambda item: ("integration" in item.path.parts, rank(item)))


@dataclass(frozen=True)
class Services:
    """Where the session's servers listen, and the environment that points a process at them."""

    s3_endpoint: str
    tracking_uri: str
    prefect_api_url: str
    env: dict[str, str]
    workdir: Path

    def s3(self):
        return boto3.client("s3", endpoint_url=self.s3_endpoint)


@dataclass(frozen=True)
class Install:
    """The environment a served process runs from: the full install (`.venv`, this one) or the
    serving install (`make serving-env`: numpy, flask, gunicorn, boto3, awslambdaric,
    prometheus-client)."""

    name: str
    bin: Path

    @property
    def python(self) -> Path:
        return self.bin / "python"

    def env(self, env: dict[str, str]) -> dict[str, str]:
        """`env` with this install's commands first on PATH."""
        return {**env, "PATH": f"{self.bin}{os.pathsep}{env.get('PATH', os.defpath)}"}

    def web_command(self, port: int) -> list[str]:
        """The documented web service command, on `port` of 127.0.0.1, from this install."""
        return [str(self.bin / "gunicorn"), "--bind", f"127.0.0.1:{port}", "predict:app"]


@contextmanager
def web_service(
    install: Install, env: dict[str, str], log: Path
) -> Iterator[tuple[subprocess.Popen, int]]:
    """The web service from `install` with `env`, on a free port, its output in `log`: the
    gunicorn master and its port, once `/ready` answers; stopped after."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            install.web_command(port),
            env=install.env(env),
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_ready(http_ok(f"http://127.0.0.1:{port}/ready"), process, 120, log)
        yield process, port
    finally:
        stop(process)


def serving_install() -> Install:
    """The serving install `make serving-env` built (SERVING_VENV, else .venv-serving)."""
    venv = Path(os.environ.get("SERVING_VENV") or REPO / ".venv-serving")
    if not (venv / ".installed").is_file():
        pytest.fail(f"no serving install at {venv}: run `make serving-env` (make test does)")
    return Install("serving", venv / "bin")


@pytest.fixture(scope="module", params=["full", "serving"])
def install(request: pytest.FixtureRequest) -> Install:
    """Each online test runs once from each install: the same answers, bit for bit."""
    if request.param == "full":
        return Install("full", Path(sys.executable).parent)
    return serving_install()


@dataclass(frozen=True)
class Trained:
    """The model `train.py` registered in the session's MLflow server."""

    run_id: str
    version: str
    rmse: float


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """Start moto S3, mlflow server and a Prefect API; point this process and children at them."""
    workdir = tmp_path_factory.mktemp("services")
    s3_port, mlflow_port = free_port(), free_port()
    s3_endpoint = f"http://127.0.0.1:{s3_port}"
    tracking_uri = f"http://127.0.0.1:{mlflow_port}"
    aws = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_endpoint,
    }
    # Runs may only write inside OUTPUT_ROOT: every test's tmp_path is inside the base folder
    # (a test that scores into its own folder sets OUTPUT_ROOT to it, or to a `_` folder in it).
    output_root = str(tmp_path_factory.getbasetemp())
    # The tracking server hands out s3:// artifact locations: models are loaded from there.
    trusted = f"models:/,runs:/,s3://{ARTIFACT_BUCKET}/"
    base_env = {
        **os.environ,
        **aws,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "OUTPUT_ROOT": output_root,
        "TRUSTED_MODEL_PREFIXES": trusted,
    }
    bin_dir = Path(sys.executable).parent
    with pytest.MonkeyPatch.context() as patch:
        for name, value in aws.items():
            patch.setenv(name, value)
        patch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        patch.setenv("OUTPUT_ROOT", output_root)
        patch.setenv("TRUSTED_MODEL_PREFIXES", trusted)
        with running(
            [str(bin_dir / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)],
            env=base_env,
            ready=http_ok(f"{s3_endpoint}/moto-api/"),
            log=workdir / "moto.log",
        ):
            s3 = boto3.client("s3", endpoint_url=s3_endpoint)
            for bucket in (INPUT_BUCKET, OUTPUT_BUCKET, ARTIFACT_BUCKET):
                s3.create_bucket(Bucket=bucket)
            with running(
                [
                    str(bin_dir / "mlflow"),
                    "server",
                    "--backend-store-uri",
                    f"sqlite:///{workdir / 'mlflow.db'}",
                    "--default-artifact-root",
                    f"s3://{ARTIFACT_BUCKET}/",
                    "--no-serve-artifacts",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(mlflow_port),
                    "--workers",
                    "1",
                ],
                env=base_env,
                ready=http_ok(f"{tracking_uri}/health"),
                log=workdir / "mlflow.log",
                timeout=120,
            ):
                from prefect.settings import PREFECT_API_URL
                from prefect.testing.utilities import prefect_test_harness

                patch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
                with prefect_test_harness(server_startup_timeout=60):
                    api_url = PREFECT_API_URL.value()
                    env = {
                        **base_env,
                        "MLFLOW_TRACKING_URI": tracking_uri,
                        "PREFECT_API_URL": api_url,
                    }
                    yield Services(s3_endpoint, tracking_uri, api_url, env, workdir)


@pytest.fixture(scope="session")
def input_dir(services: Services) -> Path:
    """Generated green months on local disk, copied to s3://tlc-trips/ as well."""
    folder = services.workdir / "trips"
    s3 = services.s3()
    for year, month in TRAIN_MONTHS:
        path = write_trips(
            folder / file_name("green", year, month), make_trips("green", year, month)
        )
        s3.upload_file(str(path), INPUT_BUCKET, path.name)
    return folder


def train_model(
    env: dict[str, str], cwd: Path, model_name: str = "ride-duration", *options: str
) -> Trained:
    """Run `train.py green 2021 1 OPTIONS` with `env`; the run, version and rmse it printed
    for `model_name`."""
    result = run_cli("train.py", "green", "2021", "1", *options, env=env, cwd=cwd)
    assert result.returncode == 0, result.stderr[-2000:]
    run_id = re.search(r"run_id: (\w+)", result.stdout).group(1)
    version = re.search(rf"models:/{model_name}/(\d+)", result.stdout).group(1)
    rmse = float(re.search(r"rmse: ([\d.]+)", result.stdout).group(1))
    return Trained(run_id=run_id, version=version, rmse=rmse)


@pytest.fixture(scope="session")
def trained(services: Services, input_dir: Path) -> Trained:
    """Run `train.py green 2021 1` against the session's MLflow server (artifacts on S3)."""
    env = {**services.env, "INPUT_URI_TEMPLATE": str(input_dir / TEMPLATE)}
    return train_model(env, services.workdir)


REFRESHED = "ride-duration-refresh"
RIDE = {"PULocationID": 130, "DOLocationID": 205, "trip_distance": 3.66}


@dataclass(frozen=True)
class Refreshable:
    """The versions of REFRESHED a refresh test moves its alias between, and the minutes each
    answers for RIDE."""

    forest: str
    linear: str
    empty: str  # a version whose files hold no model: it never loads
    minutes: dict[str, float]  # "NAME/VERSION" -> minutes


@pytest.fixture(scope="session")
def refreshable(services: Services, input_dir: Path) -> Refreshable:
    """REFRESHED in the session's MLflow server: version 1 a forest, 2 a linear model (their
    answers differ, so an answer shows which version made it), 3 no model at all."""
    from mlflow import MlflowClient

    from ride_duration.core.settings import Settings
    from ride_duration.model import service
    from ride_duration.online.answers import minutes

    env = {
        **services.env,
        "INPUT_URI_TEMPLATE": str(input_dir / TEMPLATE),
        "MODEL_NAME": REFRESHED,
    }
    forest = train_model(env, services.workdir, REFRESHED)
    linear = train_model(env, services.workdir, REFRESHED, "--estimator", "linear")
    client = MlflowClient(services.tracking_uri)
    run = client.get_run(forest.run_id)
    empty = client.create_model_version(
        REFRESHED, f"{run.info.artifact_uri}/no-model-here", run_id=forest.run_id
    )
    settings = Settings.from_env(services.env)
    answers = {
        f"{REFRESHED}/{version}": minutes(
            service.load(f"models:/{REFRESHED}/{version}", settings).predict_rides([RIDE])
        )[0]
        for version in (forest.version, linear.version)
    }
    assert len(set(answers.values())) == 2, answers  # an answer tells its version
    return Refreshable(forest.version, linear.version, str(empty.version), answers)


def move_alias(services: Services, version: str) -> None:
    """Point REFRESHED's production alias at `version`."""
    from mlflow import MlflowClient

    MlflowClient(services.tracking_uri).set_registered_model_alias(REFRESHED, "production", version)


LINEAR_MODEL = "ride-duration-linear"


@pytest.fixture(scope="session")
def trained_linear(services: Services, input_dir: Path) -> Trained:
    """Run `train.py green 2021 1 --estimator linear`, registered as ride-duration-linear (its
    own alias production: ride-duration's stays on the forest)."""
    env = {
        **services.env,
        "INPUT_URI_TEMPLATE": str(input_dir / TEMPLATE),
        "MODEL_NAME": LINEAR_MODEL,
    }
    return train_model(env, services.workdir, LINEAR_MODEL, "--estimator", "linear")


@pytest.fixture(scope="session")
def linear_sklearn(services: Services, trained_linear: Trained) -> Callable[[list[dict]], object]:
    """What scikit-learn's own `pipeline.predict` gives for rides, on their feature dicts: the
    online modes' compiled linear model must answer the same bits."""
    import mlflow
    import mlflow.sklearn

    from ride_duration.data.features import feature_records
    from ride_duration.data.rides import rides_table

    mlflow.set_tracking_uri(services.tracking_uri)
    pipeline = mlflow.sklearn.load_model(f"models:/{LINEAR_MODEL}/{trained_linear.version}")

    def predict(rides: list[dict]) -> object:
        return pipeline.predict(feature_records(rides_table(rides)))

    return predict


@pytest.fixture(scope="module")
def local_model(services: Services, trained: Trained, tmp_path_factory) -> Path:
    """The trained model as a local folder, so that S3 traffic in these tests is output only."""
    import mlflow

    mlflow.set_tracking_uri(services.tracking_uri)
    folder = tmp_path_factory.mktemp("model")
    return Path(
        mlflow.artifacts.download_artifacts(
            f"models:/ride-duration/{trained.version}", dst_path=str(folder)
        )
    )


@pytest.fixture(scope="session")
def batch_path(services: Services, trained: Trained) -> Callable[[list[dict]], object]:
    """What scikit-learn gives for rides with n_jobs=1 (the batch path's fast path, exact): the
    online modes' compiled forest must answer the same bits."""
    import mlflow
    import mlflow.sklearn

    from ride_duration.data.rides import rides_table
    from ride_duration.model.distinct import PredictionCache
    from ride_duration.model.predictors import make_predictor

    mlflow.set_tracking_uri(services.tracking_uri)
    predictor = make_predictor(
        mlflow.sklearn.load_model(f"models:/ride-duration/{trained.version}")
    )

    def predict(rides: list[dict]) -> object:
        return predictor.predict_batch(rides_table(rides), PredictionCache()).values

    return predict


def run_cli(
    script: str, *args: str, env: dict[str, str], cwd: Path, timeout: float = 240
) -> subprocess.CompletedProcess:
    """Run one of the project's entry points as a user would, in a fresh Python process."""
    return subprocess.run(
        [sys.executable, str(REPO / script), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


BIN = Path(sys.executable).parent
PROCESS_POOL = "ride-duration-process"


@dataclass
class PrefectServer:
    """A `prefect server start` with deployment.yaml deployed as the docs say, and workers."""

    api_url: str
    ui_url: str
    env: dict[str, str]
    workers: dict[str, subprocess.Popen]
    worker_logs: dict[str, Path]


def documented_deploy_commands() -> list[str]:
    """The documented commands that create the work pool and the deployments."""
    from tests.support.docs import all_sections

    deploying = all_sections()["docs/deployments.md#Deploying with Prefect"]
    wanted = [c for c in deploying.commands if " work-pool create " in c or " deploy " in c]
    assert len(wanted) == 2, deploying.commands
    return wanted


def workers_online(api_url: str, names: list[str]) -> Callable[[], bool]:
    """A readiness check: the named workers of the process pool are online."""
    import json
    import urllib.request

    def check() -> bool:
        request = urllib.request.Request(
            f"{api_url}/work_pools/{PROCESS_POOL}/workers/filter",
            data=b"{}",
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                online = {w["name"] for w in json.load(response) if w["status"] == "ONLINE"}
        except OSError:
            return False
        return set(names) <= online

    return check


@pytest.fixture(scope="session")
def prefect_server(
    services: Services, trained: Trained, input_dir: Path, tmp_path_factory
) -> Iterator[PrefectServer]:
    """`prefect server start` with its own PREFECT_HOME, the documented deploy, two workers."""
    import time

    from tests.support.servers import stop

    workdir = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    ui_url = f"http://127.0.0.1:{port}"
    api_url = f"{ui_url}/api"
    env = {
        **services.env,
        "PREFECT_HOME": str(workdir / "home"),
        "PREFECT_API_URL": api_url,
        "PREFECT_UI_API_URL": api_url,  # the UI's page asks the server where its API is
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "INPUT_URI_TEMPLATE": str(input_dir / TEMPLATE),
        "OUTPUT_ROOT": str(tmp_path_factory.getbasetemp()),
        "BACKFILL_MONTH_TIMEOUT_SECONDS": "45",
    }
    with running(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        ready=http_ok(f"{api_url}/health"),
        log=workdir / "server.log",
        timeout=180,
    ):
        for command in documented_deploy_commands():
            result = subprocess.run(
                ["bash", "-c", command],
                env=env,
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert result.returncode == 0, f"$ {command}\n{result.stdout}{result.stderr}"
        names = ["worker-1", "worker-2"]
        logs = {name: workdir / f"{name}.log" for name in names}
        workers: dict[str, subprocess.Popen] = {}
        try:
            for name in names:
                with logs[name].open("wb") as out:
                    # One month at a time per worker, as on machines sized for one month:
                    # two months in flight are then on two workers, never both on one.
                    command = ["worker", "start", "--pool", PROCESS_POOL, "--name", name]
                    command += ["--limit", "1"]
                    workers[name] = subprocess.Popen(
                        [str(BIN / "prefect"), *command],
                        env=env,
                        cwd=workdir,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
            deadline = time.monotonic() + 90
            while not workers_online(api_url, names)():
                assert time.monotonic() < deadline, "workers did not come online"
                time.sleep(0.5)
            yield PrefectServer(api_url, ui_url, env, workers, logs)
        finally:
            for process in workers.values():
                stop(process)
