"""Months as flow runs of a deployment, on its workers; and the states of past score runs."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable

from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterName,
)
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.sorting import FlowRunSort
from prefect.deployments.flow_runs import arun_deployment
from prefect.states import Crashed

from ride_duration.batch.planning import MonthOutcome, PlannedMonth, completed_outcome
from ride_duration.batch.status import LastRun
from ride_duration.core import uris
from ride_duration.core.errors import first_line

logger = logging.getLogger(__name__)

SCORE_FLOW = "ride-duration-prediction"


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
    parameters: Callable[[PlannedMonth], dict],
    idempotency_key: Callable[[PlannedMonth], str],
    max_concurrency: int,
    month_timeout_seconds: float,
    on_done: Callable[[MonthOutcome], None],
    poll_seconds: float = 2.0,
) -> list[MonthOutcome]:
    """One flow run of `deployment` per month, at most `max_concurrency` in flight.

    Each run is linked to the calling flow as a subflow. A month whose run does not reach a
    final state within `month_timeout_seconds` (a worker died with it) is reported failed.
    `on_done` is called (in a thread) with each month's outcome as soon as it is known.
    """
    slots = asyncio.Semaphore(max_concurrency)

    async def one(month: PlannedMonth) -> MonthOutcome:
        async with slots, get_client() as client:
            started = time.monotonic()
            run = await arun_deployment(
                name=deployment,
                parameters=parameters(month),
                timeout=0,
                idempotency_key=idempotency_key(month),
                as_subflow=True,
                client=client,
            )
            logger.info(
                "%s %s: flow run %s on %s", month.taxi_type, month.month, run.name, deployment
            )
            outcome = await _watch(client, run, month, started, month_timeout_seconds, poll_seconds)
        await asyncio.to_thread(on_done, outcome)
        return outcome

    return list(await asyncio.gather(*(one(month) for month in planned)))


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
            message = (
                f"flow run {run.name} did not finish within {timeout_seconds:.0f} s"
                f" (state {run.state.type.value if run.state else 'unknown'}); "
                "its worker is presumed dead"
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
        reason=first_line(error) if error.strip() else "",
    )
