"""Months run on a deployment's workers (`orchestration.deployments`): how each outcome reads,
and what the latest score runs say.

The runs themselves, on a real Prefect server and workers: tests/integration/test_backfill.py.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from prefect.client.schemas.objects import Worker, WorkerStatus, WorkPool

from ride_duration.batch.paths import MonthOutput
from ride_duration.batch.planning import PlannedMonth
from ride_duration.batch.status import LastRun, MonthStatus
from ride_duration.core.months import Month
from ride_duration.orchestration import deployments


def planned(root: str) -> PlannedMonth:
    month = Month(2022, 2)
    output = MonthOutput(root, "fhv", month)
    status = MonthStatus("fhv", month, "missing", "never scored", "in", output)
    return PlannedMonth(status, "score", "missing: never scored")


@pytest.mark.parametrize(
    ("root", "shown_output"),
    [
        ("s3://bucket/p?X-Amz-Signature=s", "s3://bucket/p"),
        (
            "s3://user:secret@bucket/p",
            "s3://bucket/p/taxi_type=fhv/year=2022/month=02/predictions.parquet",
        ),
    ],
)
@pytest.mark.parametrize(
    ("seconds", "error", "shown_seconds", "shown_reason"),
    [
        (12.34, "worker presumed dead\nTraceback ...", 12.3, "worker presumed dead"),
        (None, "   ", None, ""),
    ],
)
def test_an_outcome_keeps_one_line_and_no_credentials(
    root: str,
    shown_output: str,
    seconds: float | None,
    error: str,
    shown_seconds: float | None,
    shown_reason: str,
):
    outcome = deployments._outcome(planned(root), "failed", seconds, error)
    assert (outcome.month, outcome.taxi_type, outcome.state) == ("2022-02", "fhv", "failed")
    assert (outcome.seconds, outcome.reason) == (shown_seconds, shown_reason)
    assert outcome.output == shown_output
    assert outcome.model_version == ""
    assert outcome.rows_scored is None


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        (None, ""),
        ("", ""),
        ("   \n  ", ""),
        ("Run crashed.", "Run crashed."),
        (
            "Flow run encountered an exception: InputNotFoundError: no trip file at "
            "s3://b/green_tripdata_2021-03.parquet: the month may not be published yet",
            "no trip file at s3://b/green_tripdata_2021-03.parquet: the month may not be "
            "published yet",
        ),
        (
            "Flow run encountered an exception: ride_duration.core.errors.QualityError: "
            "green 2021-03: 40% of rows dropped\nTraceback (most recent call last):\n  ...",
            "green 2021-03: 40% of rows dropped",
        ),
        (
            "MonthBusyError: green 2021-03 is being scored by a",
            "green 2021-03 is being scored by a",
        ),
        ("KeyboardInterrupt: stop", "KeyboardInterrupt: stop"),  # not an error's name
        ("ValueError: ValueError: twice", "ValueError: twice"),  # one name is taken off, once
        ("\n\n  RuntimeError: first\nsecond", "first"),
        (
            "Flow run encountered an exception: the worker went away",
            "the worker went away",
        ),
        ("an Error: in the middle", "an Error: in the middle"),
    ],
)
def test_a_failure_message_is_the_one_line_that_says_why(message: str | None, shown: str):
    assert deployments.failure_message(message) == shown


def run(name: str, state: str | None, message: str = "", started: int | None = 1) -> object:
    """A flow run as the Prefect client reads it."""
    return SimpleNamespace(
        name=name,
        state=None
        if state is None
        else SimpleNamespace(type=SimpleNamespace(value=state), message=message),
        start_time=None if started is None else datetime(2026, 12, started, tzinfo=UTC),
        expected_start_time=datetime(2026, 11, 30, tzinfo=UTC),
    )


class Client:
    """A Prefect client that serves `runs` (newest first) a page at a time."""

    def __init__(self, runs: list[object]) -> None:
        self.runs = runs
        self.pages: list[tuple[int, int]] = []

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *_: object) -> None:
        return None

    async def read_flow_runs(self, *, limit: int, offset: int, **_: object) -> list[object]:
        self.pages.append((offset, limit))
        return self.runs[offset : offset + limit]


A, B, C = "score-green-2021-01", "score-green-2021-02", "score-green-2021-03"


@pytest.mark.parametrize(
    ("names", "runs", "found", "pages"),
    [
        ([A, B], [], {}, [(0, 2)]),
        (
            [A, B],
            [run(A, "FAILED", "ValueError: bad\nmore"), run(A, "COMPLETED"), run(B, "COMPLETED")],
            {
                A: LastRun("FAILED", "bad", datetime(2026, 12, 1, tzinfo=UTC)),
                B: LastRun("COMPLETED", "", datetime(2026, 12, 1, tzinfo=UTC)),
            },
            [(0, 2), (2, 2)],
        ),
        (  # the newest run of each name, however many pages its older runs take
            [A, B, C],
            [
                run(A, "RUNNING", started=None),
                run(A, "FAILED"),
                run(A, "FAILED"),
                run(A, "COMPLETED"),
                run(B, None),
                run(B, "CRASHED", "Run crashed."),
            ],
            {
                A: LastRun("RUNNING", "", datetime(2026, 11, 30, tzinfo=UTC)),
                B: LastRun("CRASHED", "Run crashed.", datetime(2026, 12, 1, tzinfo=UTC)),
            },
            [(0, 2), (2, 2), (4, 2), (6, 2)],
        ),
        (  # no page is read once every name is found
            [A, B, A],
            [run(B, "COMPLETED"), run(A, "COMPLETED"), run(A, "FAILED"), run(B, "FAILED")],
            {
                A: LastRun("COMPLETED", "", datetime(2026, 12, 1, tzinfo=UTC)),
                B: LastRun("COMPLETED", "", datetime(2026, 12, 1, tzinfo=UTC)),
            },
            [(0, 2)],
        ),
    ],
    ids=["no runs", "two pages", "a name found on the fourth page", "all found on the first"],
)
def test_the_last_run_of_each_month_is_read_page_by_page(
    monkeypatch: pytest.MonkeyPatch,
    names: list[str],
    runs: list[object],
    found: dict[str, LastRun],
    pages: list[tuple[int, int]],
):
    client = Client(runs)
    monkeypatch.setattr(deployments, "RUNS_PER_PAGE", 2)
    monkeypatch.setattr(deployments, "get_client", lambda: client)
    assert asyncio.run(deployments.last_runs(names)) == found
    assert client.pages == pages


class PoolClient:
    """A Prefect client that serves one work pool and its workers."""

    def __init__(self, pool: WorkPool, workers: list[Worker]) -> None:
        self.pool, self.workers = pool, workers

    async def read_work_pool(self, name: str) -> WorkPool:
        assert name == self.pool.name
        return self.pool

    async def read_workers_for_work_pool(self, name: str) -> list[Worker]:
        assert name == self.pool.name
        return self.workers


START = "`pipenv run prefect worker start --pool p`"
RESUME = "`pipenv run prefect work-pool resume p`"
WAIT = " (the months' runs wait in the pool)"


@pytest.mark.parametrize(
    ("pool_type", "paused", "statuses", "warning"),
    [
        ("process", False, ["ONLINE"], None),
        ("process", False, ["OFFLINE", "ONLINE"], None),
        ("process", False, [], f"no worker is polling work pool p: start one with {START}{WAIT}"),
        (
            "process",
            False,
            ["OFFLINE"],
            f"no worker is polling work pool p: start one with {START}{WAIT}",
        ),
        ("process", True, ["ONLINE"], f"work pool p is paused: resume it with {RESUME}{WAIT}"),
        (
            "process",
            True,
            ["OFFLINE"],
            f"work pool p is paused and no worker is polling it: resume it with {RESUME} and "
            f"start a worker with {START}{WAIT}",
        ),
        ("cloud-run:push", False, [], None),  # push and managed pools run flows without workers
        ("prefect:managed", True, [], None),
    ],
)
def test_a_pool_no_worker_will_take_runs_from_is_said_with_the_commands_that_fix_it(
    pool_type: str, paused: bool, statuses: list[str], warning: str | None
):
    pool = WorkPool(name="p", type=pool_type, is_paused=paused)
    workers = [
        Worker(name=f"w{i}", work_pool_id=pool.id, status=WorkerStatus(status))
        for i, status in enumerate(statuses)
    ]
    assert asyncio.run(deployments.idle_pool_warning(PoolClient(pool, workers), "p")) == warning
