"""Backfills: which months to score, and the outcome of each.

A backfill pins the model once, plans every (taxi type, month) pair according to its mode, and
scores each planned month on its own, so one failure does not stop the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from ride_duration.batch import manifest, paths
from ride_duration.batch.status import LastRun, MonthStatus, survey
from ride_duration.core import uris
from ride_duration.core.months import Month
from ride_duration.model.resolve import ModelRef

Mode = Literal["missing", "stale", "failed", "all"]
Action = Literal["score", "done", "skip", "not published", "unscorable"]
# The outcome of a month a backfill left alone, by what it decided.
LEFT_ALONE: dict[str, str] = {
    "done": "done",
    "skip": "skipped",
    "not published": "not published",
    "unscorable": "unscorable",
}


@dataclass(frozen=True)
class PlannedMonth:
    """One month of one taxi type, what the backfill does with it, and why."""

    status: MonthStatus
    action: Action
    reason: str

    @property
    def taxi_type(self) -> str:
        return self.status.taxi_type

    @property
    def month(self) -> Month:
        return self.status.month

    @property
    def input_uri(self) -> str:
        return self.status.input_uri

    @property
    def output(self) -> paths.MonthOutput:
        return self.status.output

    @property
    def run_name(self) -> str:
        """The score flow's run name for this month (as `score.run_name` builds it)."""
        return paths.run_name(self.taxi_type, self.month)


@dataclass
class MonthOutcome:
    """How one month of a backfill ended, with its quality when it was scored."""

    month: str
    taxi_type: str
    state: str
    model_version: str = ""
    rows_scored: int | None = None
    rmse: float | None = None
    mae: float | None = None
    unknown_pair_share: float | None = None
    seconds: float | None = None
    output: str = ""
    reason: str = ""
    drift: dict[str, Any] | None = None  # the drift section of its set's manifest, if any

    def as_row(self) -> dict[str, Any]:
        """A row of the backfill's table artifact (its drift is shown in cells of its own:
        `orchestration.report.drift_cells`)."""
        row = asdict(self)
        del row["drift"]
        return row


def completed_outcome(month: PlannedMonth, seconds: float | None) -> MonthOutcome:
    """A scored month's outcome, with rows and quality from the manifest its run published."""
    content = manifest.current(month.output) or {}
    metrics = content.get("metrics") or {}
    return MonthOutcome(
        month=str(month.month),
        taxi_type=month.taxi_type,
        state="completed",
        model_version=str((content.get("model") or {}).get("label") or ""),
        rows_scored=content.get("rows_scored"),
        rmse=metrics.get("rmse"),
        mae=metrics.get("mae"),
        unknown_pair_share=metrics.get("unknown_pair_share"),
        seconds=round(seconds, 1) if seconds is not None else None,
        output=uris.display_uri(month.output.current),
        drift=content.get("drift"),
    )


class Progress:
    """How far a backfill is: months finished out of those it scores, and the time left."""

    def __init__(self, total: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.done = 0
        self._clock = clock
        self._started = clock()

    @property
    def percent(self) -> float:
        """Finished months as a percentage (100 when there is nothing to score)."""
        return 100.0 if not self.total else round(100 * self.done / self.total, 1)

    def finished(self, outcome: MonthOutcome) -> str:
        """Count one finished month; the line that reports it, with an estimate of the rest."""
        self.done += 1
        line = f"{outcome.taxi_type} {outcome.month}: {outcome.state}"
        if outcome.rows_scored is not None:
            line += f", {outcome.rows_scored:,} rows"
        if outcome.seconds is not None:
            line += f" in {outcome.seconds:.1f} s"
        line += f"; {self.done} of {self.total} months done"
        remaining = self.total - self.done
        if remaining > 0:
            # Months finish at the pace seen so far, whether one at a time or several at once.
            left = (self._clock() - self._started) / self.done * remaining
            line += f", about {_duration(left)} left"
        return line


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def plan(
    *,
    taxi_types: Sequence[str],
    months: list[Month],
    model: ModelRef,
    mode: Mode,
    input_uri_template: str,
    output_root: str,
    last_runs: dict[str, LastRun],
    stale_after_seconds: float,
) -> list[PlannedMonth]:
    """Decide, for each taxi type and month, whether to score it and why, from its state.

    `last_runs` maps a month's run name to its latest score run, when known (mode=failed).
    """
    statuses = survey(
        taxi_types=taxi_types,
        months=months,
        model=model,
        input_uri_template=input_uri_template,
        output_root=output_root,
        last_runs=last_runs,
        stale_after_seconds=stale_after_seconds,
    )
    return [PlannedMonth(status, *decide(mode, status)) for status in statuses]


# What each mode scores, by the month's state; every other state is left alone.
SCORED_STATES: dict[Mode, frozenset[str]] = {
    "missing": frozenset({"missing", "failed"}),
    "stale": frozenset({"stale"}),
    "failed": frozenset({"failed"}),
    "all": frozenset({"done", "stale", "missing", "failed"}),
}


def decide(mode: Mode, status: MonthStatus) -> tuple[Action, str]:
    """What `mode` does with a month in `status`, and why."""
    state = status.state
    if state in ("not published", "unscorable"):
        return state, status.reason
    if mode == "missing" and status.model_changed:
        return "score", f"no set from this model version: {status.reason}"
    if state in SCORED_STATES[mode]:
        return (
            "score",
            "mode=all re-scores every month" if mode == "all" else f"{state}: {status.reason}",
        )
    if state == "done":
        return "done", _done_reason(status)
    if state == "running":
        return "skip", "running: a score run holds the month now"
    # what is left: missing, failed or stale months, each scored by the mode of its name
    return "skip", f"{state}: {status.reason} (mode={state} scores it)"


def _done_reason(status: MonthStatus) -> str:
    reason = f"current since {status.date}" if status.date else "current"
    return f"{reason}; {status.reason}" if status.reason else reason


def failure_summary(outcomes: list[MonthOutcome]) -> str:
    """One line naming the failed months and why."""
    failed = [o for o in outcomes if o.state != "completed" and o.state not in LEFT_ALONE.values()]
    parts = [f"{o.taxi_type} {o.month} ({o.reason or o.state})" for o in failed]
    return f"{len(failed)} of {len(outcomes)} months failed: " + "; ".join(parts)
