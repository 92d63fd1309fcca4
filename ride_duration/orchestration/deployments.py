"""Months as flow runs of a deployment, on its workers; and the states of past score runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas import OrchestrationResult
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterName,
)
from prefect.client.schemas.objects import FlowRun, StateType, WorkerStatus
from prefect.client.schemas.sorting import FlowRunSort
from prefect.deployments.flow_runs import arun_deployment
from prefect.states import Cancelling, Crashed

from ride_duration.batch.planning import MonthOutcome, PlannedMonth, completed_outcome
from ride_duration.batch.status import LastRun
from ride_duration.core import uris
from ride_duration.core.errors import BackfillInterruptedError

logger = logging.getLogger(__name__)

SCORE_FLOW = "ride-duration-prediction"

# The commands docs/deployments.md gives, as a user runs them from the project's folder.
WORKER_START_COMMAND = "pipenv run prefect worker start"
POOL_RESUME_COMMAND = "pipenv run prefect work-pool resume"

CANCELLED_TYPES = (StateType.CANCELLING, StateType.CANCELLED)


# Flow runs read per request: the API's own page size.
RUNS_PER_PAGE = 200


async def last_runs(run_names: list[str]) -> dict[str, LastRun]:
    """The latest score run with each name: its state type, message and start."""
    found: dict[str, LastRun] = {}
    async with get_client() as client:
        offset = 0
        while True:
            runs = await client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[SCORE_FLOW])),
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=run_names)),
                sort=FlowRunSort.EXPECTED_START_TIME_DESC,
                limit=RUNS_PER_PAGE,
                offset=offset,
            )
            for run in runs:  # newest first: keep the first run seen per name
                if run.name not in found and run.state is not None:
                    found[run.name] = LastRun(
                        state=run.state.type.value,
                        message=failure_message(run.state.message),
                        started=run.start_time or run.expected_start_time,
                    )
            if len(runs) < RUNS_PER_PAGE or len(found) == len(set(run_names)):
                return found
            offset += len(runs)


def failure_message(message: str | None) -> str:
    """A run state's message as the one line that says why: "no trip file at ...", not
    "Flow run encountered an exception: InputNotFoundError: no trip file at ..."."""
    line = (message or "").strip().split("\n")[0]
    return re.sub(
        r"^(Flow run encountered an exception: )?([A-Za-z_.]*(Error|Exception): )?", "", line
    )


async def run_on_deployment(
    *,
    deployment: str,
    planned: list[PlannedMonth],
    parameters: Callable[[PlannedMonth], dict[str, Any]],
    idempotency_key: Callable[[PlannedMonth], str],
    max_concurrency: int,
    month_timeout_seconds: float,
    on_done: Callable[[MonthOutcome], None],
    warn: Callable[[str], None],
    poll_seconds: float = 2.0,
) -> list[MonthOutcome]:
    """One flow run of `deployment` per month, at most `max_concurrency` in flight.

    Each run is linked to the calling flow as a subflow. Once the first run exists, `warn`
    receives one line if no worker will pick it up (its work pool is paused, or no worker polls
    it); the runs wait in the pool all the same, for a worker started later. A month whose run
    does not reach a final state within `month_timeout_seconds` (no worker took it, or its
    worker died with it) is reported failed. `on_done` is called (in a thread) with each
    month's outcome as soon as it is known.

    SIGINT or SIGTERM meanwhile cancels every run created that has not finished, then raises
    BackfillInterruptedError saying how many.
    """
    slots = asyncio.Semaphore(max_concurrency)
    creations: list[asyncio.Task[FlowRun]] = []
    pool_checked = False

    async with get_client() as client:

        async def create(month: PlannedMonth) -> FlowRun:
            return await arun_deployment(
                name=deployment,
                parameters=parameters(month),
                timeout=0,
                idempotency_key=idempotency_key(month),
                as_subflow=True,
                client=client,
            )

        async def one(month: PlannedMonth) -> MonthOutcome:
            nonlocal pool_checked
            async with slots:
                started = time.monotonic()
                creations.append(asyncio.create_task(create(month)))
                # Shielded: a run the server is creating when a signal arrives is still known,
                # and cancelled with the others.
                run = await asyncio.shield(creations[-1])
                logger.info(
                    "%s %s: flow run %s on %s", month.taxi_type, month.month, run.name, deployment
                )
                if not pool_checked and run.work_pool_name:
                    pool_checked = True
                    warning = await idle_pool_warning(client, run.work_pool_name)
                    if warning:
                        await asyncio.to_thread(warn, warning)
                outcome = await _watch(
                    client, run, month, started, month_timeout_seconds, poll_seconds
                )
            await asyncio.to_thread(on_done, outcome)
            return outcome

        with _signals_cancel(asyncio.current_task()) as received:
            try:
                return list(await asyncio.gather(*(one(month) for month in planned)))
            except asyncio.CancelledError:
                if not received:
                    raise
            created = await asyncio.gather(*creations, return_exceptions=True)
            cancelled = await cancel_unfinished(
                client, [run for run in created if isinstance(run, FlowRun)]
            )
    name = signal.Signals(received[0]).name
    raise BackfillInterruptedError(
        f"interrupted by {name}: cancelled {cancelled['scheduled']} scheduled and "
        f"{cancelled['running']} running flow runs of {deployment}",
        received[0],
    )


@contextlib.contextmanager
def _signals_cancel(task: asyncio.Task[Any] | None) -> Iterator[list[int]]:
    """While inside, SIGINT and SIGTERM cancel `task` (so that it can clean up) instead of
    raising wherever the program is, or ending it; the list receives the signals caught.

    Outside the main thread signals cannot be caught here, and keep their handlers.
    """
    loop = asyncio.get_running_loop()
    received: list[int] = []
    previous: dict[signal.Signals, Callable[[int, FrameType | None], Any] | int | None] = {}

    def caught(number: int) -> None:
        if not received and task is not None:
            task.cancel()
        received.append(number)  # a second signal during the cleanup is not another cancel

    for number in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(number)
        try:
            loop.add_signal_handler(number, caught, number)
        except (ValueError, RuntimeError):  # not the main thread
            break
        previous[number] = handler
    try:
        yield received
    finally:
        for number, handler in previous.items():
            loop.remove_signal_handler(number)
            # Back to what was there (Prefect's own SIGTERM handler in a flow), not the default.
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)


async def cancel_unfinished(client: PrefectClient, runs: list[FlowRun]) -> dict[str, int]:
    """Cancel each of `runs` that has not finished: a scheduled one at once, a running one
    through Prefect's cancellation (Cancelling, then its worker stops it and marks it
    Cancelled). How many of each kind were cancelled: {"scheduled": n, "running": m}."""
    counts = {"scheduled": 0, "running": 0}

    async def cancel(run: FlowRun) -> None:
        state = (await client.read_flow_run(run.id)).state
        if state is None or state.is_final() or state.is_cancelling():
            return
        kind = "scheduled" if state.is_scheduled() else "running"
        # The server turns Cancelling into Cancelled itself for a run no worker has started.
        result: OrchestrationResult[Any] = await client.set_flow_run_state(
            run.id, Cancelling(message="cancelled: the backfill that created it was interrupted")
        )
        if result.state is not None and result.state.type in CANCELLED_TYPES:
            counts[kind] += 1

    await asyncio.gather(*(cancel(run) for run in runs))
    return counts


async def idle_pool_warning(client: PrefectClient, pool_name: str) -> str | None:
    """Why no worker will pick up runs of the work pool `pool_name` (it is paused, or no worker
    polled it within its heartbeat window), with the documented command that fixes it; None
    when a worker is online, or the pool runs flows without workers (push, managed)."""
    pool = await client.read_work_pool(pool_name)
    if pool.is_push_pool or pool.is_managed_pool:
        return None
    workers = await client.read_workers_for_work_pool(pool_name)
    # The server marks a worker online when its last heartbeat is recent enough.
    online = any(worker.status == WorkerStatus.ONLINE for worker in workers)
    start = f"`{WORKER_START_COMMAND} --pool {pool_name}`"
    resume = f"`{POOL_RESUME_COMMAND} {pool_name}`"
    if pool.is_paused and not online:
        problem = f"work pool {pool_name} is paused and no worker is polling it"
        fix = f"resume it with {resume} and start a worker with {start}"
    elif pool.is_paused:
        problem, fix = f"work pool {pool_name} is paused", f"resume it with {resume}"
    elif not online:
        problem = f"no worker is polling work pool {pool_name}"
        fix = f"start one with {start}"
    else:
        return None
    return f"{problem}: {fix} (the months' runs wait in the pool)"


async def _watch(
    client: PrefectClient,
    run: FlowRun,
    month: PlannedMonth,
    started: float,
    timeout_seconds: float,
    poll_seconds: float,
) -> MonthOutcome:
    """Poll `run` until it ends, or mark it crashed after `timeout_seconds`; its outcome."""
    while not (run.state and run.state.is_final()):
        if time.monotonic() - started > timeout_seconds:
            waiting = run.state is not None and run.state.is_scheduled()
            message = (
                f"flow run {run.name} did not finish within {timeout_seconds:.0f} s"
                f" (state {run.state.type.value if run.state else 'unknown'}); "
                + ("no worker started it" if waiting else "its worker is presumed dead")
            )
            # Mark it so the UI stops showing it as running and its slot is freed.
            await client.set_flow_run_state(run.id, Crashed(message=message), force=True)
            return _outcome(month, "failed", time.monotonic() - started, message)
        await asyncio.sleep(poll_seconds)
        run = await client.read_flow_run(run.id)
    seconds = run.total_run_time.total_seconds() if run.total_run_time else None
    if run.state.is_completed():
        return await asyncio.to_thread(completed_outcome, month, seconds)
    message = run.state.message or f"flow run {run.name} ended {run.state.name}"
    return _outcome(month, run.state.type.value.lower(), seconds, message)


def _outcome(month: PlannedMonth, state: str, seconds: float | None, error: str) -> MonthOutcome:
    return MonthOutcome(
        month=str(month.month),
        taxi_type=month.taxi_type,
        state=state,
        seconds=round(seconds, 1) if seconds is not None else None,
        output=uris.display_uri(month.output.current),
        reason=error.strip().splitlines()[0] if error.strip() else "",
    )
