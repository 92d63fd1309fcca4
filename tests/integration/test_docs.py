"""Every command block of every documentation page, run exactly as written, as a reader runs them.

The commands run in the order of `tests/support/doc_plans.py` (README first, then the pages) in a
fresh copy of the project (with its `.venv` and generated months in `data/`), in bash, with the
exports of earlier commands of the same section, as in one terminal. A command that serves until
stopped (a worker, a web server, a stream server) starts in the background, as a reader starts it
in a second terminal, and is stopped when its section ends. Servers listen where the pages say,
on 127.0.0.1 at their usual ports, in a private network namespace: a `make demo` server on the
same ports keeps running beside the test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ride_duration.core.settings import environment_variables
from tests.conftest import REPO
from tests.support.doc_plans import PLANS
from tests.support.docs import Section, all_sections, bare, conforms, example_answers, read
from tests.support.netns import private_network
from tests.support.servers import stop
from tests.support.shown import shapes, shown_block
from tests.support.tlc_fake import file_name, make_trips, write_trips

# Ports the pages' commands use: free inside the private network, or they must be free here.
DOC_PORTS = (4200, 5000, 9000, 9100, 9696, 9697)
DEMO_MONTHS = [(2021, m) for m in range(1, 6)]


@dataclass
class Terminal:
    """A reader's shell: the project copy, the environment, and what earlier commands exported.

    `enter` prefixes every command (nsenter into the private network, or nothing).
    """

    cwd: Path
    env: dict[str, str]
    logs: Path
    enter: list[str]
    exports: list[str] = field(default_factory=list)
    background: list[subprocess.Popen] = field(default_factory=list)

    def script(self, command: str) -> str:
        return "set -euo pipefail\n" + "\n".join(self.exports) + "\n" + command + "\n"

    def run(self, command: str, timeout: float = 900) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [*self.enter, "bash", "-c", self.script(command)],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if command.startswith("export ") and result.returncode == 0:
            self.exports.append(command)
        return result

    def answers(self, probe: str) -> bool:
        """Whether a small Python `probe` exits 0 in the terminal's network."""
        return self.run(f"{sys.executable} -c {_quote(probe)}", timeout=30).returncode == 0

    def start(self, command: str, ready: Callable[[Terminal, Path], bool], timeout=180) -> None:
        log = self.logs / f"background-{len(os.listdir(self.logs))}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                # As typed (a reader's `VAR=value command` too); stopped by its process group.
                [*self.enter, "bash", "-c", self.script(command)],
                cwd=self.cwd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.background.append(process)
        deadline = time.monotonic() + timeout
        while not ready(self, log):
            assert process.poll() is None, f"{command} exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"{command} not ready:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)

    def stop_background(self) -> None:
        while self.background:
            stop(self.background.pop())


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def port_open(port: int) -> Callable[[Terminal, Path], bool]:
    probe = f"import socket, sys; sys.exit(socket.socket().connect_ex(('127.0.0.1', {port})))"
    return lambda terminal, _: terminal.answers(probe)


def http_ok(url: str) -> Callable[[Terminal, Path], bool]:
    probe = f"import urllib.request; urllib.request.urlopen({url!r}, timeout=2)"
    return lambda terminal, _: terminal.answers(probe)


def log_says(text: str) -> Callable[[Terminal, Path], bool]:
    return lambda _, log: text in log.read_text(errors="replace")


@dataclass(frozen=True)
class Serving:
    """A command that runs until stopped, and how to tell it is ready."""

    pattern: str
    ready: Callable[[Terminal, Path], bool]


SERVING = [
    Serving(r"prefect worker start", log_says("started!")),
    Serving(r"moto_server .*-p 9000", port_open(9000)),
    Serving(r"mlflow server .*--port 5000", http_ok("http://127.0.0.1:5000/health")),
    Serving(r"gunicorn .*127.0.0.1:9696 predict:app", http_ok("http://127.0.0.1:9696/ready")),
    Serving(r"gunicorn .*127.0.0.1:9697 predict:app", http_ok("http://127.0.0.1:9697/ready")),
    # The stream consumer serving its metrics: it answers once its model is loaded.
    Serving(r"STREAM_METRICS_PORT=9100 .*stream\.py", http_ok("http://127.0.0.1:9100/metrics")),
]


def _serving(command: str) -> Serving | None:
    return next((s for s in SERVING if re.search(s.pattern, command)), None)


def _copy_project(target: Path) -> None:
    """The project as a reader's clone holds it, with this checkout's environment in `.venv`."""
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
    (target / ".venv-serving").symlink_to(REPO / ".venv-serving")  # make test built it
    # A clone is a git repository: manifests record its commit, and the tests list its pages.
    git = ["git", "-c", "user.name=reader", "-c", "user.email=reader@localhost"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "clone"]):
        subprocess.run([*git, *command], cwd=target, check=True, capture_output=True)


def _month_files(folder: Path) -> None:
    """The months the pages score, generated (real months are test_real_tlc.py's): the
    commands are what is tested here, and small months keep the trainings quick."""
    folder.mkdir()
    for year, month in DEMO_MONTHS:
        name = file_name("green", year, month)
        write_trips(folder / name, make_trips("green", year, month, 20_000))


@pytest.fixture(scope="module")
def terminal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Terminal]:
    network, why = private_network()
    enter = network.enter if network else []
    root = tmp_path_factory.mktemp("docs")
    try:
        if network is None:
            shell = Terminal(cwd=root, env=dict(os.environ), logs=root, enter=[])
            busy = [port for port in DOC_PORTS if port_open(port)(shell, root)]
            if busy:
                pytest.skip(
                    f"no private network here ({why}), and the ports {busy} the pages use are "
                    "in use on 127.0.0.1: stop what holds them (make server-stop) to run these"
                )
        project = root / "ride-duration"
        project.mkdir()
        _copy_project(project)
        _month_files(project / "data")
        home = root / "home"
        home.mkdir()
        # A reader's environment: nothing of the project's, Prefect's, MLflow's or AWS's set
        # (every setting's variable: the session's servers set some, TRUSTED_MODEL_PREFIXES
        # among them, when a module that uses them ran first on this worker).
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("PREFECT_", "MLFLOW_", "AWS_", "PIPENV_"))
            and name not in environment_variables()
            and name
            not in {
                "TLC_DATA_DIR",
                "VIRTUAL_ENV",
                "SERVING_VENV",
                # a make of `make test`'s: the reader's make is not a sub-make of another
                "MAKEFLAGS",
                "MAKELEVEL",
                "MFLAGS",
            }
        }
        env |= {"HOME": str(home), "PREFECT_HOME": str(home / ".prefect")}
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        logs = root / "logs"
        logs.mkdir()
        shell = Terminal(cwd=project, env=env, logs=logs, enter=enter)
        try:
            yield shell
        finally:
            shell.stop_background()
            shell.run(f"{REPO / '.venv/bin/prefect'} server stop", timeout=60)
    finally:
        if network is not None:
            network.close()


SECTIONS: list[Section] = [all_sections()[key] for key in PLANS if key in all_sections()]
# The answers the pages show, by the command that gets them: with generated months the model is
# not make demo's, so its answers are checked for their shape here (keys, versions, durations to
# two decimals), and for their values in test_real_tlc.py, on the real months.
EXAMPLES = {(example.page, example.command): example for example in example_answers()}


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("section", SECTIONS, ids=lambda s: s.key)
def test_the_section_runs_as_written(terminal: Terminal, section: Section) -> None:
    plan = PLANS[section.key]
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
            introduction = plan.prints.get(bare(command))
            if introduction is not None:  # every line it prints is shown, and no other
                shown = shown_block(read(section.page), introduction)
                assert shapes(output, "== ") == shapes(shown, "== "), output
            example = EXAMPLES.get((section.page, bare(command)))
            if example is not None:
                answer = json.loads(result.stdout.strip().splitlines()[-1])
                problems = conforms(example.answer, answer, exact=False)
                assert not problems, f"$ {command} answers unlike {example.page}: {problems}"
    finally:
        terminal.stop_background()
