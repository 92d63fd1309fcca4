"""The steps of a backfill flow: plan and report the months, score them here or on workers.

The backfill flow (backfill.py) calls these in order; the score flow itself is passed in, so
that this package never imports the entry points.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from prefect import State, get_run_logger
from prefect.artifacts import (
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.runtime import flow_run

from ride_duration.batch import paths
from ride_duration.batch.planning import (
    LEFT_ALONE,
    Mode,
    MonthOutcome,
    PlannedMonth,
    Progress,
    completed_outcome,
    failure_summary,
    plan,
)
from ride_duration.batch.status import LastRun, MonthStatus, survey
from ride_duration.core import uris
from ride_duration.core.errors import BackfillFailedError, first_line
from ride_duration.core.months import Month
from ride_duration.data.layouts import lacking_fields
from ride_duration.data.taxi_types import TaxiType
from ride_duration.model import service
from ride_duration.orchestration import deployments, report
from ride_duration.orchestration.tasks import RunSetup

# The error metrics in a row of a backfill's or a status table (MonthOutcome's).
METRICS = ("rmse", "mae", "unknown_pair_share")


@dataclass(frozen=True)
class Backfill:
    """One backfill: its taxi types and months, the pinned model and where trips come and go."""

    taxi_types: list[TaxiType]
    months: list[Month]
    run: RunSetup
    key: str  # names its artifacts: "backfill-green-2021-01-2021-05"
    label: str  # describes them: "green 2021-01..2021-05"

    @property
    def score_parameters(self) -> dict[str, Any]:
        """What every month's score run gets besides its taxi type and month."""
        return {
            "model_uri": self.run.model.resolved_uri,
            "input_uri_template": self.run.input_uri_template,
            "output_root": self.run.output_root,
        }


def plan_months(backfill: Backfill, mode: Mode, dry_run: bool) -> list[PlannedMonth]:
    """What happens to each month, each said in the log."""
    last_runs = _last_runs(backfill) if mode == "failed" else {}
    planned = plan(
        taxi_types=backfill.taxi_types,
        months=backfill.months,
        model=backfill.run.model,
        mode=mode,
        input_uri_template=backfill.run.input_uri_template,
        output_root=backfill.run.output_root,
        last_runs=last_runs,
        stale_after_seconds=backfill.run.settings.lock_stale_seconds,
    )
    logger = get_run_logger()
    for month in planned:
        logger.info(
            "%s %s: %s (%s)", month.taxi_type, month.month, _verb(month, dry_run), month.reason
        )
    return planned


def dry_run_rows(planned: list[PlannedMonth], warn_psi: float | None) -> list[dict[str, Any]]:
    """What a dry run returns: each month with what would happen to it, and why, in the shape
    of a real run's rows (the model, rows, errors and drift are those of the month's current
    set; a drift above `warn_psi` is marked)."""
    return [
        _row(
            MonthOutcome(
                month=str(p.month),
                taxi_type=p.taxi_type,
                state=_verb(p, True),
                output=uris.display_uri(p.output.current),
                reason=p.reason,
                **_current_set(p.status),
            ),
            warn_psi,
        )
        for p in planned
    ]


def status_rows(backfill: Backfill) -> list[dict[str, Any]]:
    """The state of every month (done, stale, missing, failed, running, not published,
    unscorable), also as the run's table artifact."""
    statuses = survey(
        taxi_types=backfill.taxi_types,
        months=backfill.months,
        model=backfill.run.model,
        input_uri_template=backfill.run.input_uri_template,
        output_root=backfill.run.output_root,
        last_runs=_last_runs(backfill),
        stale_after_seconds=backfill.run.settings.lock_stale_seconds,
        unscorable=_unscorable(service.needed_fields(backfill.run.model)),
    )
    warn_psi = backfill.run.settings.limits.warn_psi
    rows = [
        {
            "taxi_type": s.taxi_type,
            "month": str(s.month),
            "state": s.state,
            "model_version": s.version,
            "rows_scored": s.rows,
            **{name: s.metrics.get(name) for name in METRICS},
            **report.drift_cells(s.drift, warn_psi),
            "published": s.date,
            "reason": s.reason,
            "output": uris.display_uri(s.output.current),
        }
        for s in statuses
    ]
    create_table_artifact(
        table=rows,
        key=f"status-{backfill.key.removeprefix('backfill-')}",
        description=f"State of {backfill.label} for {backfill.run.model.label}",
    )
    counts = Counter(s.state for s in statuses)
    get_run_logger().info(
        "%d months: %s", len(statuses), ", ".join(f"{n} {state}" for state, n in counts.items())
    )
    return rows


def _unscorable(fields: list[str] | None) -> Callable[[str], str | None]:
    """Why a taxi type's trips lack what the model needs (None: they have it, or the model
    does not say)."""
    return lambda taxi_type: (lacking_fields(taxi_type, fields) or None) if fields else None


def _last_runs(backfill: Backfill) -> dict[str, LastRun]:
    names = [paths.run_name(t, m) for t in backfill.taxi_types for m in backfill.months]
    return asyncio.run(deployments.last_runs(names))


def progress_reporter(backfill: Backfill, months: int) -> Callable[[MonthOutcome], None]:
    """A callback for each finished month: a log line and the run's progress artifact."""
    logger = get_run_logger()
    progress = Progress(months)
    progress_id = create_progress_artifact(
        progress=progress.percent,
        key=f"{backfill.key}-progress",
        description=f"Months of {backfill.label} finished",
    )
    assert isinstance(progress_id, UUID)  # created from a sync flow: no coroutine

    def finished(outcome: MonthOutcome) -> None:
        logger.info(progress.finished(outcome))
        update_progress_artifact(progress_id, progress.percent)

    return finished


def score_on_workers(
    backfill: Backfill,
    to_score: list[PlannedMonth],
    *,
    deployment: str,
    max_concurrency: int,
    on_done: Callable[[MonthOutcome], None],
) -> list[MonthOutcome]:
    """Each month as a flow run of the score deployment, at most `max_concurrency` at once.

    A warning in the run's log (and on the console) says when no worker will pick the runs up;
    SIGINT or SIGTERM cancels the runs not finished and raises BackfillInterruptedError.
    """
    model = backfill.run.model
    logger = get_run_logger()
    return asyncio.run(
        deployments.run_on_deployment(
            deployment=deployment,
            planned=to_score,
            parameters=lambda p: {
                "taxi_type": p.taxi_type,
                "year": p.month.year,
                "month": p.month.month,
                **backfill.score_parameters,
            },
            idempotency_key=lambda p: f"{flow_run.id}/{p.taxi_type}/{p.month}/{model.label}",
            max_concurrency=max_concurrency,
            month_timeout_seconds=backfill.run.settings.backfill_month_timeout_seconds,
            on_done=on_done,
            warn=logger.warning,
        )
    )


def score_here(
    backfill: Backfill,
    to_score: list[PlannedMonth],
    score_flow: Callable[..., State[Any]],
    on_done: Callable[[MonthOutcome], None],
) -> list[MonthOutcome]:
    """Each month as a subflow of this process, one after the other; a failure stops none."""
    scored = []
    for month in to_score:
        scored.append(_score_one_here(month, score_flow, backfill.score_parameters))
        on_done(scored[-1])
    return scored


def finish(
    backfill: Backfill, planned: list[PlannedMonth], scored: list[MonthOutcome]
) -> list[dict[str, Any]]:
    """Each month's outcome, in the table artifact and log; BackfillFailedError (with the
    rows, so that the table is shown on failure too) if one failed."""
    by_month = {(o.taxi_type, o.month): o for o in scored}
    outcomes = [by_month.get((p.taxi_type, str(p.month))) or _left_alone(p) for p in planned]
    warn_psi = backfill.run.settings.limits.warn_psi
    rows = [_row(outcome, warn_psi) for outcome in outcomes]
    create_table_artifact(
        table=rows,
        key=backfill.key,
        description=f"Backfill {backfill.label} with {backfill.run.model.label}",
    )
    completed = sum(o.state == "completed" for o in outcomes)
    skipped = sum(o.state in LEFT_ALONE.values() for o in outcomes)
    get_run_logger().info(
        "%d months scored, %d skipped, %d failed",
        completed,
        skipped,
        len(outcomes) - completed - skipped,
    )
    if completed + skipped < len(outcomes):
        raise BackfillFailedError(failure_summary(outcomes), rows)
    return rows


def _verb(month: PlannedMonth, dry_run: bool) -> str:
    return "would score" if dry_run and month.action == "score" else month.action


def _score_one_here(
    month: PlannedMonth, score_flow: Callable[..., State[Any]], parameters: dict[str, Any]
) -> MonthOutcome:
    """Score one month as a subflow of this process."""
    started = time.monotonic()
    state = score_flow(
        taxi_type=month.taxi_type,
        year=month.month.year,
        month=month.month.month,
        return_state=True,
        **parameters,
    )
    seconds = time.monotonic() - started
    if state.is_completed():
        return completed_outcome(month, seconds)
    error = state.result(raise_on_failure=False)
    message = first_line(error) if str(error).strip() else (state.name or "")
    return MonthOutcome(
        month=str(month.month),
        taxi_type=month.taxi_type,
        state=state.type.value.lower(),
        seconds=round(seconds, 1),
        output=uris.display_uri(month.output.current),
        reason=message,
    )


def _left_alone(month: PlannedMonth) -> MonthOutcome:
    return MonthOutcome(
        month=str(month.month),
        taxi_type=month.taxi_type,
        state=LEFT_ALONE[month.action],
        output=uris.display_uri(month.output.current),
        reason=month.reason,
        **_current_set(month.status),
    )


def _current_set(status: MonthStatus) -> dict[str, Any]:
    """A month's current set as an outcome's fields: its model, rows, error metrics and
    drift."""
    return {
        "model_version": status.version,
        "rows_scored": status.rows,
        **{name: status.metrics.get(name) for name in METRICS},
        "drift": status.drift,
    }


def _row(outcome: MonthOutcome, warn_psi: float | None) -> dict[str, Any]:
    """A month's row of the backfill's table: its outcome, with the largest drift of its set
    (`report.drift_cells`) after its error metrics."""
    cells = list(outcome.as_row().items())
    at = [key for key, _ in cells].index("seconds")
    drifts = list(report.drift_cells(outcome.drift, warn_psi).items())
    return dict(cells[:at] + drifts + cells[at:])
