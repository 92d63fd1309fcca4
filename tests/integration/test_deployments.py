"""deployment.yaml on a real Prefect server: deploy, UI runs, scheduled runs, backfills on workers.

The session's `prefect server start` (tests/integration/conftest.py) has deployment.yaml deployed
with the documented commands and two process workers polling every second. Backfills onto a pool
no worker polls (a copy of the monthly deployment on a pool of its own) say so and wait, and
backfills interrupted cancel the flow runs they created.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterName,
    FlowRunFilterParentFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import StateType
from prefect.exceptions import PrefectHTTPStatusError
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Scheduled

from ride_duration.batch import manifest
from ride_duration.batch.paths import MonthOutput
from ride_duration.core.months import Month
from tests.conftest import REPO
from tests.integration.conftest import BIN, PROCESS_POOL, TEMPLATE, PrefectServer, Trained
from tests.support.failures import assert_one_line_failure
from tests.support.servers import stop
from tests.support.tlc_fake import file_name
from tests.support.troubleshooting import assert_documented

MONTHLY = "ride-duration-prediction/monthly"
BACKFILL = "ride-duration-prediction-backfill/backfill"
SCHEDULED = "ride-duration-prediction-scheduled"


def _api(server: PrefectServer, coroutine_function, *args):
    async def call():
        async with get_client() as client:
            return await coroutine_function(client, *args)

    with temporary_settings({PREFECT_API_URL: server.api_url}):
        return asyncio.run(call())


async def _wait_final(client, flow_run_id, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while True:
        run = await client.read_flow_run(flow_run_id)
        if run.state and run.state.is_final():
            return run
        assert time.monotonic() < deadline, f"flow run {run.name} still {run.state.type}"
        await asyncio.sleep(1)


def test_deploy_creates_the_documented_deployments(prefect_server):
    async def read(client):
        return {
            f"{flow}/{name}": await client.read_deployment_by_name(f"{flow}/{name}")
            for flow, name in [
                ("ride-duration-prediction", "monthly"),
                ("ride-duration-prediction-backfill", "backfill"),
                *((SCHEDULED, taxi_type) for taxi_type in ("green", "yellow", "fhvhv")),
            ]
        }

    deployments = _api(prefect_server, read)
    monthly, backfill = deployments[MONTHLY], deployments[BACKFILL]
    assert monthly.schedules == []
    assert monthly.enforce_parameter_schema
    assert backfill.enforce_parameter_schema
    assert monthly.global_concurrency_limit.limit == 4
    assert backfill.parameters["deployment"] == MONTHLY
    for taxi_type in ("green", "yellow", "fhvhv"):
        scheduled = deployments[f"{SCHEDULED}/{taxi_type}"]
        assert scheduled.parameters == {"taxi_type": taxi_type}
        assert scheduled.enforce_parameter_schema
        assert taxi_type in scheduled.description
        assert "America/New_York" in scheduled.description
        [schedule] = scheduled.schedules
        assert (schedule.schedule.cron, schedule.schedule.timezone, schedule.active) == (
            "0 6 3 * *",
            "America/New_York",
            True,
        )
        assert schedule.slug == f"{taxi_type}-monthly"
    assert {d.work_pool_name for d in deployments.values()} == {PROCESS_POOL}


def test_the_parameter_schema_is_what_the_ui_custom_run_form_is_built_from(prefect_server):
    async def read(client):
        return await client.read_deployment_by_name(MONTHLY)

    schema = _api(prefect_server, read).parameter_openapi_schema
    assert schema["required"] == ["taxi_type", "year", "month"]
    properties = schema["properties"]
    assert properties["taxi_type"]["enum"] == ["yellow", "green", "fhv", "fhvhv"]
    # Plain number boxes with their bounds (no int/None toggle), the bounds in the description.
    for name, low, high in (("year", 2009, 2100), ("month", 1, 12)):
        field = properties[name]
        assert (field["type"], field["minimum"], field["maximum"]) == ("integer", low, high)
        assert f"{low} to {high}" in field["description"]
    # Optional text fields are plain strings whose empty default means "from the environment".
    for name in ("model_uri", "input_uri_template", "output_root"):
        assert (properties[name]["type"], properties[name]["default"]) == ("string", "")
        assert "Empty:" in properties[name]["description"]


@pytest.mark.parametrize(
    "parameters",
    [
        {"taxi_type": "green", "year": 2021, "month": 13},
        {"taxi_type": "green", "year": 2021, "month": 0},
        {"taxi_type": "green", "year": 2008, "month": 3},
        {"taxi_type": "green", "year": 2021},
        {"taxi_type": "green", "month": 3},
        {"taxi_type": "green", "year": None, "month": 3},
        {"taxi_type": "purple", "year": 2021, "month": 3},
        {"taxi_type": "green", "year": 2021, "month": 3, "model_uri": None},
    ],
    ids=["month 13", "month 0", "year 2008", "no month", "no year", "null year", "taxi", "null"],
)
def test_the_server_refuses_parameters_the_form_refuses(prefect_server, parameters, request):
    # Looked for by name: the server's scheduler may create the schedule's runs meanwhile.
    name = f"refused-{request.node.callspec.id.replace(' ', '-')}"

    async def create(client):
        deployment = await client.read_deployment_by_name(MONTHLY)
        with pytest.raises(PrefectHTTPStatusError, match="409"):
            await client.create_flow_run_from_deployment(
                deployment.id, parameters=parameters, name=name
            )
        return await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name]))
        )

    assert _api(prefect_server, create) == []  # no run was created


def test_the_server_refuses_a_custom_run_with_month_13(prefect_server):
    async def create(client):
        deployment = await client.read_deployment_by_name(MONTHLY)
        await client.create_flow_run_from_deployment(
            deployment.id, parameters={"taxi_type": "green", "year": 2021, "month": 13}
        )

    with pytest.raises(PrefectHTTPStatusError, match="13 is greater than the maximum of 12"):
        _api(prefect_server, create)


def _experiment_root(server: PrefectServer, name: str) -> Path:
    """A root of the test's own inside the workers' OUTPUT_ROOT: in a folder whose name starts
    with _, as a root inside OUTPUT_ROOT must be."""
    return Path(server.env["OUTPUT_ROOT"]) / f"_{name}"


def _current_sets(output_root: Path) -> list[Path]:
    """Each month's current set: the one data file of its partition."""
    return sorted(output_root.glob("taxi_type=green/year=*/month=*/*.parquet"))


def _kept_sets(output_root: Path) -> list[Path]:
    """Each model version's set of each month, kept under _versions/."""
    return sorted(output_root.glob("_versions/taxi_type=green/year=*/month=*/*.parquet"))


def test_a_custom_run_from_the_ui_is_executed_by_a_worker(
    prefect_server, trained: Trained, tmp_path: Path
):
    output_root = _experiment_root(prefect_server, tmp_path.name)

    async def custom_run(client):
        # What the UI's "Custom run" sends: POST /deployments/{id}/create_flow_run.
        deployment = await client.read_deployment_by_name(MONTHLY)
        run = await client.create_flow_run_from_deployment(
            deployment.id,
            parameters={
                "taxi_type": "green",
                "year": 2021,
                "month": 2,
                "output_root": str(output_root),
            },
        )
        return await _wait_final(client, run.id)

    run = _api(prefect_server, custom_run)
    assert run.state.is_completed(), run.state.message
    assert run.name == "score-green-2021-02"
    partition = "taxi_type=green/year=2021/month=02"
    output = output_root / partition / "predictions.parquet"
    assert pq.read_metadata(output).num_rows > 0
    kept = output_root / "_versions" / partition / f"{trained.run_id}.parquet"
    assert kept.read_bytes() == output.read_bytes()
    # A deployment's run draws the monitoring report of its last 12 months, and links it.
    report = output_root / "_reports" / "report-green.html"
    assert "<svg" in report.read_text()

    async def link(client):
        return await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["monitoring-green"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]),
            )
        )

    (artifact,) = _api(prefect_server, link)
    assert artifact.data.endswith(f"](file://{report})")  # Prefect keeps a link as markdown


def test_a_run_scheduled_for_a_date_scores_that_date_minus_the_publication_lag(
    prefect_server, trained: Trained
):
    scheduled = datetime(2021, 7, 3, 10, 0, tzinfo=UTC)  # 06:00 in New York

    async def scheduled_run(client):
        deployment = await client.read_deployment_by_name(f"{SCHEDULED}/green")
        run = await client.create_flow_run_from_deployment(
            deployment.id, state=Scheduled(scheduled_time=scheduled)
        )
        final = await _wait_final(client, run.id)
        [month_run] = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id])
            )
        )
        # A run's logs reach the server in batches, after the run may have ended: wait for them.
        deadline = time.monotonic() + 60
        while True:
            logs = await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id]))
            )
            messages = [log.message for log in logs]
            if any("scoring 2021-04" in m for m in messages) or time.monotonic() > deadline:
                return final, month_run, messages
            await asyncio.sleep(1)

    run, month_run, messages = _api(prefect_server, scheduled_run)
    assert run.state.is_completed(), run.state.message
    assert run.name == "scheduled-green-2021-04"  # July 2021 minus a lag of 3 months
    assert month_run.name == "score-green-2021-04"
    assert month_run.parameters | {"taxi_type": "green", "year": 2021, "month": 4} == (
        month_run.parameters
    )
    assert any(
        "scoring 2021-04, the month of this run's scheduled start (2021-07-03 06:00 "
        "America/New_York) minus a publication lag of 3 months" in m
        for m in messages
    ), messages
    # A scheduled run has only its taxi type: it writes under the worker's OUTPUT_ROOT.
    root = Path(prefect_server.env["OUTPUT_ROOT"])
    partition = "taxi_type=green/year=2021/month=04"
    assert (root / partition / "predictions.parquet").exists()
    assert (root / "_versions" / partition / f"{trained.run_id}.parquet").exists()


def _backfill_cli(
    server: PrefectServer,
    output_root: Path,
    *extra: str,
    deployment: str = MONTHLY,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    **popen,
):
    command = [
        sys.executable,
        str(REPO / "backfill.py"),
        "green",
        "2021-01",
        "2021-04",
        "--deployment",
        deployment,
        "--max-concurrency",
        "2",
        "--output-root",
        str(output_root),
        *extra,
    ]
    env = {**server.env, **(env or {})}
    cwd = cwd or output_root.parent
    if popen:
        return subprocess.Popen(command, env=env, cwd=cwd, **popen)
    return subprocess.run(
        command,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _score_runs_of_backfill(server: PrefectServer, backfill_name: str):
    async def read(client):
        parents = [r for r in await client.read_flow_runs() if r.name == backfill_name]
        children = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[p.id for p in parents])
            )
        )
        return children

    return _api(server, read)


def _executed_by(server: PrefectServer, flow_run_id) -> str | None:
    """The worker whose log shows the flow run's own process; a worker that lost the race to
    submit it also names the run, in an "Aborted submission" line."""
    line = f"View at {server.ui_url}/runs/flow-run/{flow_run_id}"
    return next((name for name, log in server.worker_logs.items() if line in log.read_text()), None)


def test_a_backfill_fans_out_over_two_workers_concurrently(
    prefect_server: PrefectServer, tmp_path: Path, trained: Trained
):
    output_root = _experiment_root(prefect_server, tmp_path.name)
    result = _backfill_cli(prefect_server, output_root)
    assert result.returncode == 0, result.stderr[-3000:]
    for month in ("01", "02", "03", "04"):
        partition = f"taxi_type=green/year=2021/month={month}"
        path = output_root / partition / "predictions.parquet"
        assert pq.read_metadata(path).num_rows > 0
        kept = output_root / "_versions" / partition / f"{trained.run_id}.parquet"
        assert kept.read_bytes() == path.read_bytes()
    runs = [
        r
        for r in _score_runs_of_backfill(prefect_server, "backfill-2021-01-2021-04")
        if r.state.is_completed()
    ]
    assert {r.name for r in runs} >= {f"score-green-2021-0{m}" for m in range(1, 5)}
    # In flight = from the backfill creating a month's run (taking a concurrency slot) to its
    # end; the Running phase alone is ~1 s after a process start and need not overlap.
    spans = sorted((r.created, r.end_time) for r in runs)
    assert any(later_start < end for (_, end), (later_start, _) in itertools.pairwise(spans)), (
        "no two months were in flight at the same time"
    )
    # Each worker (one month at a time) executed at least one of these months.
    assert {_executed_by(prefect_server, r.id) for r in runs} >= set(prefect_server.worker_logs)


def _flow_run_processes(flow_run_id: str) -> list[int]:
    """PIDs of processes executing the flow run (Prefect passes its id in the environment)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode() in environ:
            found.append(int(entry.name))
    return found


def test_killing_a_worker_mid_backfill_leaves_every_month_done_or_reported_failed(
    prefect_server: PrefectServer, tmp_path: Path, trained: Trained, input_dir: Path
):
    # January's trip file is a pipe no one writes to: its run stays in flight until the kill,
    # so the machine always dies mid-month (a run that had just finished would not test this).
    trips = tmp_path / "trips"
    trips.mkdir()
    for month in (1, 2, 3, 4):
        name = file_name("green", 2021, month)
        if month == 1:
            os.mkfifo(trips / name)
        else:
            (trips / name).symlink_to(input_dir / name)
    output_root = _experiment_root(prefect_server, tmp_path.name)
    output_root.mkdir()
    log = tmp_path / "backfill.log"
    stuck: list[int] = []
    with log.open("w") as out:
        backfill = _backfill_cli(
            prefect_server,
            output_root,
            "--mode",
            "all",
            "--input-uri-template",
            str(trips / TEMPLATE),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            victim = None
            deadline = time.monotonic() + 120
            while victim is None:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                for run in _score_runs_of_backfill(prefect_server, "backfill-2021-01-2021-04"):
                    if run.name == "score-green-2021-01" and run.state.is_running():
                        name = _executed_by(prefect_server, run.id)
                        stuck = _flow_run_processes(str(run.id))
                        if name and stuck:
                            victim = (name, run)
                time.sleep(0.5)
            name, run = victim
            # The machine dies: the worker and the process running its month.
            os.killpg(prefect_server.workers[name].pid, signal.SIGKILL)
            for pid in stuck:
                os.kill(pid, signal.SIGKILL)
            returncode = backfill.wait(timeout=300)
        finally:
            if backfill.poll() is None:
                backfill.kill()
            for pid in stuck:  # never leave a process blocked on the pipe
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    text = log.read_text()
    assert returncode == 1, text[-3000:]  # the month that died is reported, the flow fails
    error = next(line for line in text.splitlines() if line.startswith("error: "))
    assert error.startswith("error: 1 of 4 months failed"), error
    assert "green 2021-01 (" in error, error
    assert "did not finish within 45 s" in error, error
    done = {path.parent.name.removeprefix("month="): path for path in _current_sets(output_root)}
    # Every other month is a whole current set, with the manifest that matches it.
    assert set(done) == {"02", "03", "04"}
    for month, path in done.items():
        content = manifest.current(MonthOutput(str(output_root), "green", Month(2021, int(month))))
        assert content is not None
        assert content["output"]["rows"] == pq.read_metadata(path).num_rows
        assert Path(content["output"]["version_uri"]).read_bytes() == path.read_bytes()
    assert len(_kept_sets(output_root)) == 3
    # Neither a file nor a manifest for the month that died.
    partition = output_root / "taxi_type=green/year=2021/month=01"
    assert not list(partition.glob("*.parquet"))
    assert not list(partition.glob("_manifest*"))
    assert not list((output_root / "_versions/taxi_type=green/year=2021/month=01").glob("*"))

    rerun = _backfill_cli(prefect_server, output_root)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "1 months scored, 3 skipped, 0 failed" in rerun.stdout + rerun.stderr
    assert (len(_current_sets(output_root)), len(_kept_sets(output_root))) == (4, 4)


def _unpolled_deployment(server: PrefectServer, name: str, *, paused: bool) -> str:
    """The monthly deployment's copy `ride-duration-prediction/NAME` on a process work pool of
    its own, NAME, that no worker polls (paused if asked)."""

    async def create(client):
        process_pool = await client.read_work_pool(PROCESS_POOL)
        await client.create_work_pool(
            WorkPoolCreate(
                name=name,
                type="process",
                base_job_template=process_pool.base_job_template,
                is_paused=paused,
            )
        )
        monthly = await client.read_deployment_by_name(MONTHLY)
        await client.create_deployment(
            flow_id=monthly.flow_id,
            name=name,
            work_pool_name=name,
            entrypoint=monthly.entrypoint,
            path=monthly.path,
            pull_steps=monthly.pull_steps,
            parameter_openapi_schema=monthly.parameter_openapi_schema,
            enforce_parameter_schema=True,
        )

    _api(server, create)
    return f"ride-duration-prediction/{name}"


def _runs_of(server: PrefectServer, deployment: str):
    """Every flow run of the deployment named `deployment`."""

    async def read(client):
        found = await client.read_deployment_by_name(deployment)
        return await client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[found.id]))
        )

    return _api(server, read)


def _wait_for_line(path: Path, text: str, process: subprocess.Popen, timeout: float = 300) -> str:
    """The first line of the file at `path` holding `text`, once the running `process` wrote it."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [line for line in path.read_text().splitlines() if text in line]
        if lines:
            return lines[0]
        assert process.poll() is None, f"ended with {process.returncode}: {path.read_text()}"
        assert time.monotonic() < deadline, path.read_text()[-3000:]
        time.sleep(0.5)


@pytest.mark.parametrize("paused", [False, True], ids=["no worker", "paused pool"])
def test_a_backfill_no_worker_will_pick_up_says_so_and_waits_for_one(
    prefect_server: PrefectServer, tmp_path: Path, trained: Trained, paused: bool
):
    pool = "ride-duration-paused" if paused else "ride-duration-unpolled"
    deployment = _unpolled_deployment(prefect_server, pool, paused=paused)
    output_root = _experiment_root(prefect_server, tmp_path.name)
    err = tmp_path / "backfill.err"
    worker_log = tmp_path / "worker.log"
    start = f"`pipenv run prefect worker start --pool {pool}`"
    if paused:
        expected = (
            f"work pool {pool} is paused and no worker is polling it: resume it with "
            f"`pipenv run prefect work-pool resume {pool}` and start a worker with {start} "
            "(the months' runs wait in the pool)"
        )
    else:
        expected = (
            f"no worker is polling work pool {pool}: start one with {start} "
            "(the months' runs wait in the pool)"
        )
    worker = None
    with err.open("w") as stderr, worker_log.open("w") as worker_out:
        # Each month must not be given up on while no worker runs it: this test starts one.
        backfill = _backfill_cli(
            prefect_server,
            output_root,
            deployment=deployment,
            env={"BACKFILL_MONTH_TIMEOUT_SECONDS": "600"},
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        try:
            line = _wait_for_line(err, expected, backfill)
            # It keeps waiting: the runs are in the pool for a worker started later, which the
            # commands the line names start (as a user would, from the project's folder).
            assert backfill.poll() is None, err.read_text()
            for command in re.findall(r"`([^`]+)`", line):
                hint = subprocess.Popen(
                    ["bash", "-c", command],
                    env=prefect_server.env,
                    cwd=REPO,
                    stdout=worker_out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                if " worker start " in command:
                    worker = hint
                else:
                    assert hint.wait(timeout=120) == 0, worker_log.read_text()
            stdout, _ = backfill.communicate(timeout=600)
        finally:
            if backfill.poll() is None:
                backfill.kill()
            if worker is not None:
                stop(worker)
    stderr_text = err.read_text()
    assert backfill.returncode == 0, stderr_text[-3000:] + worker_log.read_text()[-3000:]
    assert (stdout + stderr_text).count(expected) == 1, stderr_text
    assert "Traceback" not in stderr_text
    assert len(_current_sets(output_root)) == 4
    runs = _runs_of(prefect_server, deployment)
    assert sorted(r.name for r in runs) == [f"score-green-2021-0{m}" for m in range(1, 5)]
    assert all(r.state.is_completed() for r in runs)


@pytest.mark.parametrize(
    ("signal_number", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)]
)
def test_interrupting_a_backfill_cancels_the_flow_runs_it_created(
    prefect_server: PrefectServer,
    tmp_path: Path,
    trained: Trained,
    signal_number: signal.Signals,
    exit_code: int,
):
    # No worker polls the pool: the months' runs stay scheduled until the interrupt.
    pool = f"ride-duration-{signal_number.name.lower()}"
    deployment = _unpolled_deployment(prefect_server, pool, paused=False)
    output_root = _experiment_root(prefect_server, tmp_path.name)
    workdir = tmp_path / "work"
    workdir.mkdir()
    out, err = tmp_path / "backfill.out", tmp_path / "backfill.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        backfill = _backfill_cli(
            prefect_server,
            output_root,
            deployment=deployment,
            cwd=workdir,
            stdout=stdout,
            stderr=stderr,
        )
        try:
            _wait_for_line(err, f"no worker is polling work pool {pool}", backfill)
            # --max-concurrency 2: two of the four months have a run, the others wait for one.
            deadline = time.monotonic() + 120
            while len(_runs_of(prefect_server, deployment)) < 2:
                assert backfill.poll() is None, err.read_text()
                assert time.monotonic() < deadline, err.read_text()
                time.sleep(0.5)
            backfill.send_signal(signal_number)
            returncode = backfill.wait(timeout=120)
        finally:
            if backfill.poll() is None:
                backfill.kill()
    output = (out.read_text(), err.read_text())
    result = subprocess.CompletedProcess(backfill.args, returncode, *output)
    message = (
        f"interrupted by {signal_number.name}: cancelled 2 scheduled and 0 running flow runs "
        f"of {deployment}"
    )
    assert_one_line_failure(result, message, exit_code, workdir=workdir)
    assert_documented(f"error: {message}")
    runs = _runs_of(prefect_server, deployment)
    assert len(runs) == 2
    assert {r.state.type for r in runs} == {StateType.CANCELLED}, [r.state for r in runs]
    assert not _current_sets(output_root)


def test_interrupting_a_backfill_cancels_its_running_months_through_their_workers(
    prefect_server: PrefectServer, tmp_path: Path, trained: Trained
):
    # A pool with one worker of its own that runs one month at a time, whatever became of the
    # session's workers; every trip file is a pipe no one writes to, so its month stays running
    # and the other month's run stays scheduled.
    pool = "ride-duration-one-worker"
    deployment = _unpolled_deployment(prefect_server, pool, paused=False)
    trips = tmp_path / "trips"
    trips.mkdir()
    for month in (1, 2, 3, 4):
        os.mkfifo(trips / file_name("green", 2021, month))
    output_root = _experiment_root(prefect_server, tmp_path.name)
    out, err = tmp_path / "backfill.out", tmp_path / "backfill.err"
    runs = []
    with (
        out.open("w") as stdout,
        err.open("w") as stderr,
        (tmp_path / "worker.log").open("w") as worker_log,
    ):
        worker = subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--limit", "1"],
            env=prefect_server.env,
            cwd=tmp_path,
            stdout=worker_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        backfill = _backfill_cli(
            prefect_server,
            output_root,
            "--mode",
            "all",
            "--input-uri-template",
            str(trips / TEMPLATE),
            deployment=deployment,
            env={"BACKFILL_MONTH_TIMEOUT_SECONDS": "600"},
            stdout=stdout,
            stderr=stderr,
        )
        try:
            deadline = time.monotonic() + 180
            while sorted(r.state.type for r in runs) != [StateType.RUNNING, StateType.SCHEDULED]:
                assert backfill.poll() is None, err.read_text()
                assert time.monotonic() < deadline, (err.read_text()[-3000:], runs)
                time.sleep(0.5)
                runs = _runs_of(prefect_server, deployment)
            backfill.send_signal(signal.SIGINT)
            returncode = backfill.wait(timeout=120)
            # Prefect's cancellation: the worker stops the running month's process, then marks it.
            deadline = time.monotonic() + 180
            while not all(r.state.is_final() for r in runs):
                assert time.monotonic() < deadline, [r.state for r in runs]
                time.sleep(1)
                runs = _runs_of(prefect_server, deployment)
        finally:
            if backfill.poll() is None:
                backfill.kill()
            for run in runs:  # never leave a process blocked on a pipe
                for pid in _flow_run_processes(str(run.id)):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            stop(worker)
    output = (out.read_text(), err.read_text())
    result = subprocess.CompletedProcess(backfill.args, returncode, *output)
    message = (
        f"interrupted by SIGINT: cancelled 1 scheduled and 1 running flow runs of {deployment}"
    )
    assert_one_line_failure(result, message, 130)
    assert_documented(f"error: {message}")
    assert len(runs) == 2
    assert {r.state.type for r in runs} == {StateType.CANCELLED}, [r.state for r in runs]
    assert all(not _flow_run_processes(str(r.id)) for r in runs)
    assert not _current_sets(output_root)
