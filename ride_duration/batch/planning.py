"""Backfills: which months to score, and the outcome of each.

A backfill pins the model once, plans every (taxi type, month) pair according to its mode, and
scores each planned month on its own, so one failure does not stop the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

from ride_duration.batch import manifest, paths
from ride_duration.core import storage, uris
from ride_duration.core.months import Month
from ride_duration.data.sources import trip_file_uri
from ride_duration.model.resolve import ModelRef

Mode = Literal["missing", "failed", "all"]
Action = Literal["score", "done", "skip", "input missing"]


@dataclass(frozen=True)
class PlannedMonth:
    """One month of one taxi type, and what the backfill does with it."""

    taxi_type: str
    month: Month
    input_uri: str
    output_uri: str
    action: Action
    reason: str

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
    rows_scored: int | None = None
    rmse: float | None = None
    mae: float | None = None
    unknown_pair_share: float | None = None
    seconds: float | None = None
    output: str = ""
    error: str = ""

    def as_row(self) -> dict:
        """A row of the backfill's table artifact."""
        return asdict(self)


def completed_outcome(month: PlannedMonth, seconds: float | None) -> MonthOutcome:
    """A scored month's outcome, with rows and quality from the manifest its run wrote."""
    content = manifest.read(month.output_uri) or {}
    metrics = content.get("metrics") or {}
    return MonthOutcome(
        month=str(month.month),
        taxi_type=month.taxi_type,
        state="completed",
        rows_scored=content.get("rows_scored"),
        rmse=metrics.get("rmse"),
        mae=metrics.get("mae"),
        unknown_pair_share=metrics.get("unknown_pair_share"),
        seconds=round(seconds, 1) if seconds is not None else None,
        output=uris.display_uri(month.output_uri),
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


FAILED_STATES = {"FAILED", "CRASHED", "CANCELLED", "TIMEDOUT"}


def plan(
    *,
    taxi_types: list[str],
    months: list[Month],
    model: ModelRef,
    mode: Mode,
    input_uri_template: str,
    output_root: str,
    last_states: dict[str, str | None],
    check_inputs: bool,
) -> list[PlannedMonth]:
    """Decide, for each taxi type and month, whether to score it and why.

    `last_states` maps a month's run name to the state type of its latest score run, if any;
    `check_inputs` also looks for each month's trip file (for dry runs).
    """
    planned = []
    for taxi_type in taxi_types:
        for month in months:
            input_uri = trip_file_uri(input_uri_template, taxi_type, month)
            output_uri = paths.MonthOutput.of(output_root, taxi_type, month, model).data
            name = paths.run_name(taxi_type, month)
            action, reason = _decide(mode, manifest.is_complete(output_uri), last_states.get(name))
            if action == "score" and check_inputs and not storage.exists(input_uri):
                action, reason = (
                    "input missing",
                    f"no trip file at {uris.display_uri(input_uri)}",
                )
            planned.append(PlannedMonth(taxi_type, month, input_uri, output_uri, action, reason))
    return planned


def _decide(mode: Mode, complete: bool, last_state: str | None) -> tuple[Action, str]:
    if mode == "all":
        return "score", "mode=all re-scores every month"
    if mode == "missing":
        if complete:
            return "done", "complete output for this model version"
        return "score", "no complete output for this model version"
    if last_state in FAILED_STATES:
        return "score", f"last attempt {last_state.lower()}"
    if last_state is None:
        return "skip", "never attempted (mode=missing scores it)"
    return "skip", f"last attempt {last_state.lower()}"


def failure_summary(outcomes: list[MonthOutcome]) -> str:
    """One line naming the failed months and why."""
    failed = [o for o in outcomes if o.state != "completed" and o.state != "skipped"]
    parts = [f"{o.taxi_type} {o.month} ({o.error or o.state})" for o in failed]
    return f"{len(failed)} of {len(outcomes)} months failed: " + "; ".join(parts)
