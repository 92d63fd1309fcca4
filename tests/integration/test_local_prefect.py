"""The local Prefect server of commands without PREFECT_API_URL, on an idle and a busy machine.

With no PREFECT_API_URL and a fresh PREFECT_HOME, the first command starts the local Prefect
server (migrating its new database, slow when the cores are taken) and waits for it as long
as a slow machine needs; the next command reuses it. Prefect's own temporary server gives up
after 20 s here, which failed every first run beside this load.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.conftest import TEMPLATE, Services, Trained, run_cli
from tests.support.servers import free_port, refused_url, stop

BURNERS_PER_CORE = 2


@pytest.fixture
def busy_cores() -> Iterator[int]:
    """Twice as many CPU-bound processes as the machine has cores, until the test ends."""
    count = BURNERS_PER_CORE * (os.cpu_count() or 1)
    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
        for _ in range(count)
    ]
    try:
        yield count
    finally:
        for burner in burners:
            stop(burner)


@pytest.fixture
def fresh_prefect(tmp_path: Path, services: Services) -> Iterator[dict[str, str]]:
    """An environment with no Prefect API configured and a new PREFECT_HOME; stops its server."""
    port = free_port()
    env = {name: value for name, value in services.env.items() if name != "PREFECT_API_URL"} | {
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "LOCAL_PREFECT_PORT": str(port),
    }
    try:
        yield env
    finally:
        subprocess.run(
            [str(REPO / ".venv/bin/prefect"), "server", "stop"],
            env=env,
            capture_output=True,
            timeout=60,
        )
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, "the local server is still up"


@pytest.mark.timeout(1200)
def test_score_and_backfill_succeed_beside_twice_as_many_busy_processes_as_cores(
    busy_cores: int,
    fresh_prefect: dict[str, str],
    trained: Trained,
    input_dir: Path,
    tmp_path: Path,
):
    env = fresh_prefect | {
        "INPUT_URI_TEMPLATE": str(input_dir / TEMPLATE),
        "OUTPUT_ROOT": str(tmp_path / "out"),
    }
    first = run_cli("score.py", "green", "2021", "2", env=env, cwd=tmp_path, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "starting a local Prefect server" in first.stderr
    assert "its first start creates the database" in first.stderr
    assert "the local Prefect server answered after" in first.stderr

    second = run_cli("score.py", "green", "2021", "3", env=env, cwd=tmp_path, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "starting a local Prefect server" not in second.stderr  # reused, not started again

    backfill = run_cli(
        "backfill.py", "green", "2021-01", "2021-03", env=env, cwd=tmp_path, timeout=900
    )
    assert backfill.returncode == 0, backfill.stderr[-3000:]
    assert "1 months scored, 2 skipped, 0 failed" in backfill.stdout + backfill.stderr
    for month in ("01", "02", "03"):
        partition = f"taxi_type=green/year=2021/month={month}"
        assert (tmp_path / "out" / partition / "predictions.parquet").is_file()
        assert (tmp_path / "out/_versions" / partition / f"{trained.run_id}.parquet").is_file()


def test_a_stopped_local_server_is_started_again_and_the_profile_points_at_it(
    fresh_prefect: dict[str, str], trained: Trained, input_dir: Path, tmp_path: Path
):
    env = fresh_prefect | {
        "INPUT_URI_TEMPLATE": str(input_dir / TEMPLATE),
        "OUTPUT_ROOT": str(tmp_path / "out"),
    }
    url = f"http://127.0.0.1:{env['LOCAL_PREFECT_PORT']}/api"
    started = subprocess.run(
        [sys.executable, "-m", "ride_duration.orchestration.server"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == url
    view = subprocess.run(
        [str(REPO / ".venv/bin/prefect"), "config", "view"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert f"PREFECT_API_URL='{url}'" in view.stdout  # later prefect commands find it

    stopped = subprocess.run(
        [str(REPO / ".venv/bin/prefect"), "server", "stop"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Server stopped" in stopped.stdout
    again = run_cli("score.py", "green", "2021", "2", env=env, cwd=tmp_path, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"starting a local Prefect server at {url}" in again.stderr


def test_a_configured_prefect_api_that_refuses_fails_at_once_with_one_line(
    services: Services, tmp_path: Path
):
    env = services.env | {"PREFECT_API_URL": f"{refused_url()}/api"}
    result = run_cli("score.py", "green", "2021", "2", env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: the Prefect API at {env['PREFECT_API_URL']} (PREFECT_API_URL) refused the "
        "connection: start that server, or unset PREFECT_API_URL to let this command start a "
        "local one"
    ]
