"""Every command block of the README, run exactly as written, as a new user runs them.

The commands run in order in a fresh copy of the project (with its `.venv` and the month files in
`data/`), in bash, with the exports of earlier commands, as in one terminal. A command that serves
until stopped (a worker, a web server, a consumer) starts in the background, as a user starts it
in a second terminal, and is stopped when its section ends. Servers listen where the README says:
on 127.0.0.1 at their usual ports, which must be free.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.readme import bare, sections
from tests.servers import stop
from tests.tlc_fake import file_name, make_trips, write_trips

# Ports the README's commands use; a test run needs them free.
README_PORTS = (4200, 5000, 9000, 9696)
DEMO_MONTHS = [(2021, m) for m in range(1, 6)]


@dataclass(frozen=True)
class Serving:
    """A command that runs until stopped, and how to tell it is ready."""

    pattern: str
    ready: Callable[[Path], bool]


def port_open(port: int) -> Callable[[Path], bool]:
    def check(_: Path) -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    return check


def log_says(text: str) -> Callable[[Path], bool]:
    def check(log: Path) -> bool:
        return text in log.read_text(errors="replace")

    return check


def http_ok(url: str) -> Callable[[Path], bool]:
    from tests.servers import http_ok as check

    return lambda _: check(url)()


SERVING = [
    Serving(r"prefect worker start", log_says("started!")),
    Serving(r"moto_server .*-p 9000", port_open(9000)),
    Serving(r"mlflow server .*--port 5000", http_ok("http://127.0.0.1:5000/health")),
    Serving(r"gunicorn .*127.0.0.1:9696 predict:app", http_ok("http://127.0.0.1:9696/ready")),
]


@dataclass(frozen=True)
class Plan:
    """How the test runs one section: commands it cannot run here, and what output must say."""

    skip: dict[str, str] = field(default_factory=dict)  # command -> why it is not run here
    expect: dict[str, tuple[str, ...]] = field(default_factory=dict)  # command -> texts


NO_DOCKER = "needs a Docker engine, which neither this machine nor CI has (test_image.py replays"
NO_DOCKER += " the image's install step instead)"

# Every README section with a console block must be here (tests/test_readme.py checks it).
PLANS: dict[str, Plan] = {
    "Quickstart": Plan(
        skip={"make test": "it is the suite this test is part of"},
        expect={
            "make demo": (
                "rmse: ",
                "compiled forest: bit for bit equal to scikit-learn",
                "scored ",
                "predicted with compiled forest",
                "Prefect API: http://127.0.0.1:4200/api",
                "output/taxi_type=green/year=2021/month=03/",
            )
        },
    ),
    "Scoring a month": Plan(
        expect={
            "pipenv run python score.py green 2021 3": ("score-green-2021-03", "scored "),
            "pipenv run python score.py green 2021 3 --output-root output/experiments": (
                "output/experiments/taxi_type=green/year=2021/month=03/",
            ),
        }
    ),
    "Backfilling past months": Plan(
        expect={
            # 2021-03 and 2021-04 were scored above with this model
            "pipenv run python backfill.py green 2021-01 2021-05": (
                "green 2021-01: completed",
                "3 of 3 months done",
                "3 months scored, 2 skipped, 0 failed",
            ),
            "pipenv run python backfill.py green,yellow 2021-01 2021-12 --dry-run": (
                "green 2021-05: done",
                "yellow 2021-01: input missing",
            ),
        }
    ),
    "Deploying with Prefect": Plan(
        expect={
            "make server": ("http://127.0.0.1:4200/api",),
            "pipenv run prefect deploy --all --prefect-file deployment.yaml --no-prompt": (
                "ride-duration-prediction/monthly",
                "ride-duration-prediction-scheduled/green",
                "ride-duration-prediction-backfill/backfill",
            ),
            "pipenv run python backfill.py green 2021-01 2021-03 --mode all --deployment "
            "ride-duration-prediction/monthly": ("3 months scored, 0 skipped, 0 failed",),
        }
    ),
    "The Docker image": Plan(
        skip={
            "docker run --rm -e MLFLOW_TRACKING_URI=http://mlflow:5000 -e "
            "OUTPUT_ROOT=s3://predictions/rides ride-duration:latest python score.py green "
            "2021 3": NO_DOCKER
        }
    ),
    "Training": Plan(
        expect={
            "pipenv run python train.py green 2021 1": ("rmse: ", "compiled forest: bit for bit"),
            "pipenv run python -m ride_duration.compile models:/ride-duration/1": (
                "compiled ride-duration/1: bit for bit equal to scikit-learn",
            ),
        },
    ),
    "Serving online": Plan(
        expect={
            "curl -s -X POST -H 'Content-Type: application/json' -d '{\"PULocationID\": 130, "
            '"DOLocationID": 205, "trip_distance": 3.66}\' http://127.0.0.1:9696/predict': (
                '{"duration":',
                '"model_version":"ride-duration/',
            ),
            "curl -s http://127.0.0.1:9696/ready": ('"status":"ready"',),
        }
    ),
    "Scoring a stream": Plan(
        expect={
            "pipenv run python stream.py --until-idle": (
                "reading ride_events into ride_predictions",
            ),
            "pipenv run python -c \"import boto3; k = boto3.client('kinesis'); shard = "
            "k.list_shards(StreamName='ride_predictions')['Shards'][0]['ShardId']; it = "
            "k.get_shard_iterator(StreamName='ride_predictions', ShardId=shard, "
            "ShardIteratorType='TRIM_HORIZON')['ShardIterator']; "
            "print(k.get_records(ShardIterator=it)['Records'][0]['Data'].decode())\"": (
                '"model": "ride_duration_prediction_model"',
                '"ride_id": 156',
            ),
        }
    ),
    "S3 and a remote MLflow server": Plan(
        expect={
            "pipenv run python score.py green 2021 3": (
                "s3://predictions/rides/taxi_type=green/year=2021/month=03/",
            )
        }
    ),
    "Development": Plan(
        skip={
            "make test": "it is the suite this test is part of",
            "make bench": "it takes minutes and rewrites benchmarks/RESULTS.md; it is run by "
            "hand and its results are committed",
        },
        expect={"make test-unit": (" passed",)},
    ),
}


@dataclass
class Terminal:
    """A user's shell: the project copy, the environment, and what earlier commands exported."""

    cwd: Path
    env: dict[str, str]
    logs: Path
    exports: list[str] = field(default_factory=list)
    background: list[subprocess.Popen] = field(default_factory=list)

    def script(self, command: str) -> str:
        return "set -euo pipefail\n" + "\n".join(self.exports) + "\n" + command + "\n"

    def run(self, command: str, timeout: float = 900) -> subprocess.CompletedProcess:
        result = subprocess.run(
            ["bash", "-c", self.script(command)],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if command.startswith("export ") and result.returncode == 0:
            self.exports.append(command)
        return result

    def start(self, command: str, ready: Callable[[Path], bool], timeout: float = 120) -> None:
        log = self.logs / f"background-{len(self.background)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["bash", "-c", self.script(f"exec {command}")],
                cwd=self.cwd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.background.append(process)
        deadline = time.monotonic() + timeout
        while not ready(log):
            assert process.poll() is None, f"{command} exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"{command} not ready:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)

    def stop_background(self) -> None:
        while self.background:
            stop(self.background.pop())


def _copy_project(target: Path) -> None:
    """The project as a user's clone holds it, with this checkout's environment in `.venv`."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (item.decode() for item in listed)):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)  # keeps mtimes: make sees .venv up to date
    (target / ".venv").symlink_to(REPO / ".venv")


def _month_files(folder: Path) -> None:
    """The months the README scores, generated (real months are test_real_tlc.py's): the
    commands are what is tested here, and small months keep the trainings quick."""
    folder.mkdir()
    for year, month in DEMO_MONTHS:
        name = file_name("green", year, month)
        write_trips(folder / name, make_trips("green", year, month, 20_000))


@pytest.fixture(scope="module")
def terminal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Terminal]:
    busy = [port for port in README_PORTS if port_open(port)(Path())]
    assert not busy, f"the README's ports {busy} are in use on 127.0.0.1: stop what holds them"
    root = tmp_path_factory.mktemp("readme")
    project = root / "ride-duration"
    project.mkdir()
    _copy_project(project)
    _month_files(project / "data")
    home = root / "home"
    home.mkdir()
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PREFECT_", "MLFLOW_", "AWS_", "PIPENV_"))
        and name not in {"INPUT_URI_TEMPLATE", "OUTPUT_ROOT", "TLC_DATA_DIR", "VIRTUAL_ENV"}
    }
    env |= {"HOME": str(home), "PREFECT_HOME": str(home / ".prefect")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    logs = root / "logs"
    logs.mkdir()
    shell = Terminal(cwd=project, env=env, logs=logs)
    try:
        yield shell
    finally:
        shell.stop_background()
        subprocess.run(
            [str(REPO / ".venv/bin/prefect"), "server", "stop"],
            env=env,
            capture_output=True,
            timeout=60,
        )


def _serving(command: str) -> Serving | None:
    return next((s for s in SERVING if re.search(s.pattern, command)), None)


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("section", sections(), ids=lambda s: s.title)
def test_readme_section_runs_as_written(terminal: Terminal, section) -> None:
    plan = PLANS[section.title]
    if all(bare(command) in plan.skip for command in section.commands):
        pytest.skip("; ".join(sorted(set(plan.skip.values()))))
    terminal.exports.clear()  # each section is a terminal of its own
    try:
        for command in section.commands:
            if bare(command) in plan.skip:
                continue
            serving = _serving(command)
            if serving:
                terminal.start(command, serving.ready)
                continue
            result = terminal.run(command)
            output = result.stdout + result.stderr
            assert result.returncode == 0, f"$ {command}\n{output[-4000:]}"
            for text in plan.expect.get(bare(command), ()):
                assert text in output, f"$ {command} did not say {text!r}:\n{output[-4000:]}"
    finally:
        terminal.stop_background()
