"""The state of every month: done, stale, missing, failed, running, not published, unscorable.

Judged from what is there, without reading any trip file: the current set's manifest, one
HEAD or stat of the month's input, the latest score run's state in Prefect (passed in), and,
for a run Prefect still calls running, the month's lock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from ride_duration.batch import manifest, paths
from ride_duration.batch.locks import MonthLock
from ride_duration.core import storage, uris
from ride_duration.core.months import Month
from ride_duration.data.sources import trip_file_uri
from ride_duration.model.resolve import ModelRef

State = Literal["done", "stale", "missing", "failed", "running", "not published", "unscorable"]

# Prefect's state types of a score run that ended without a set, and of one still going.
FAILED_STATES = frozenset({"FAILED", "CRASHED", "CANCELLED", "TIMEDOUT"})
ACTIVE_STATES = frozenset({"RUNNING", "PENDING", "CANCELLING"})

# Month states looked up at once: each is a few small round trips to the store.
LOOKUPS_AT_ONCE = 16


@dataclass(frozen=True)
class LastRun:
    """The latest score run of a month, as Prefect has it."""

    state: str  # Prefect's state type: "COMPLETED", "FAILED", "RUNNING", ...
    message: str = ""
    started: datetime | None = None


@dataclass(frozen=True)
class MonthStatus:
    """One taxi type's month: its state, why, and its current set's manifest when it has one."""

    taxi_type: str
    month: Month
    state: State
    reason: str
    input_uri: str
    output: paths.MonthOutput
    manifest: dict[str, Any] | None = None
    model_changed: bool = False  # stale because another model version is asked for

    @property
    def version(self) -> str:
        """The model version of the current set ("" without one)."""
        return str(((self.manifest or {}).get("model") or {}).get("label") or "")

    @property
    def rows(self) -> int | None:
        """Rows of the current set."""
        return (self.manifest or {}).get("rows_scored")

    @property
    def metrics(self) -> dict[str, float | None]:
        """The current set's error metrics: rmse, mae, mean_error, unknown_pair_share ({}
        without one)."""
        return dict((self.manifest or {}).get("metrics") or {})

    @property
    def drift(self) -> dict[str, Any] | None:
        """The current set's drift from its model's reference profile, as its manifest has it
        (`manifest.drift_section`); None without a set, or for one made before drift was
        measured."""
        return (self.manifest or {}).get("drift")

    @property
    def date(self) -> str:
        """When the current set was published (UTC, to the minute)."""
        finished = str((self.manifest or {}).get("finished_at") or "")
        return finished[:16].replace("T", " ")


def stale_reasons(
    content: dict[str, Any], input_info: storage.FileInfo | None, model: ModelRef
) -> list[str]:
    """Why a current set no longer matches what it would be made from now: its input changed
    (size, ETag or modification time), or another model version is asked for."""
    reasons = []
    recorded = content.get("input") or {}
    if input_info is not None:
        for key, name, show in (
            ("bytes", "size", _count),
            ("etag", "ETag", str),
            ("modified", "modified", _moment),
        ):
            before, now = recorded.get(key), input_info.get(key)
            if before is not None and now is not None and before != now:
                reasons.append(f"input changed ({name} {show(before)} → {show(now)})")
                break
    made_with = content.get("model") or {}
    before, now = made_with.get("label"), model.label
    if made_with.get("run_id") != model.run_id or before != now:
        if before == now:  # the same name for another run: say which runs
            before, now = f"{before} run {made_with.get('run_id')}", f"{now} run {model.run_id}"
        reasons.append(f"model changed ({before} → {now})")
    return reasons


def judge(
    *,
    taxi_type: str,
    month: Month,
    input_uri: str,
    output: paths.MonthOutput,
    model: ModelRef,
    content: dict[str, Any] | None,
    input_info: storage.FileInfo | None,
    last_run: LastRun | None,
    run_alive: bool,
    unscorable: str | None,
) -> MonthStatus:
    """A month's state from what was looked up (no I/O): see the module's docstring.

    `input_info` is None when the input does not exist; `run_alive` says whether a run Prefect
    calls active still holds the month's lock (or started too recently to have taken it).
    """

    def status(state: State, reason: str, changed: bool = False) -> MonthStatus:
        return MonthStatus(
            taxi_type, month, state, reason, input_uri, output, content, model_changed=changed
        )

    active = last_run is not None and last_run.state in ACTIVE_STATES
    if active and run_alive:
        return status("running", "a score run holds the month now")
    died = active and not run_alive
    failure = ""
    if died:
        failure = "its run died without a word (Prefect still shows it running; its lock is gone)"
    elif last_run is not None and last_run.state in FAILED_STATES:
        failure = last_run.message or f"last run {last_run.state.lower()}"
    if content is not None:
        if input_info is None:
            return status("done", "its trip file is no longer there")
        reasons = stale_reasons(content, input_info, model)
        if not reasons:
            return status("done", "")
        if failure:
            reasons.append(f"last attempt failed: {failure}")
        return status("stale", "; ".join(reasons), changed=any("model" in r for r in reasons))
    if unscorable:
        return status("unscorable", unscorable)
    if input_info is None:
        return status("not published", f"no trip file at {uris.display_uri(input_uri)}")
    if failure:
        return status("failed", failure)
    return status("missing", "never scored")


def survey(
    *,
    taxi_types: Sequence[str],
    months: list[Month],
    model: ModelRef,
    input_uri_template: str,
    output_root: str,
    last_runs: dict[str, LastRun],
    stale_after_seconds: float,
    unscorable: Callable[[str], str | None] = lambda taxi_type: None,
) -> list[MonthStatus]:
    """The state of each taxi type's months, in order, looked up a few at a time."""
    pairs = [(taxi_type, month) for taxi_type in taxi_types for month in months]
    reasons = {taxi_type: unscorable(taxi_type) for taxi_type in taxi_types}

    def look(pair: tuple[str, Month]) -> MonthStatus:
        taxi_type, month = pair
        input_uri = trip_file_uri(input_uri_template, taxi_type, month)
        output = paths.MonthOutput(output_root, taxi_type, month)
        last_run = last_runs.get(paths.run_name(taxi_type, month))
        alive = False
        if last_run is not None and last_run.state in ACTIVE_STATES:
            alive = _run_alive(output, last_run, stale_after_seconds)
        return judge(
            taxi_type=taxi_type,
            month=month,
            input_uri=input_uri,
            output=output,
            model=model,
            content=manifest.current(output),
            input_info=_input_info(input_uri),
            last_run=last_run,
            run_alive=alive,
            unscorable=reasons[taxi_type],
        )

    with ThreadPoolExecutor(LOOKUPS_AT_ONCE) as pool:
        return list(pool.map(look, pairs))


def _input_info(uri: str) -> storage.FileInfo | None:
    try:
        return storage.file_info(uri)
    except FileNotFoundError:
        return None


def _run_alive(output: paths.MonthOutput, last_run: LastRun, stale_after_seconds: float) -> bool:
    """Whether an active run still scores the month: it holds the lock, or it started too
    recently to have taken it (a run opens its input and loads its model first)."""
    if MonthLock(
        output.lock, owner="status", stale_after_seconds=stale_after_seconds
    ).live_holder():
        return True
    if last_run.started is None:
        return False
    return (datetime.now(UTC) - last_run.started).total_seconds() < stale_after_seconds


def _count(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def _moment(value: object) -> str:
    """A modification time as the store gives it, in UTC to the second when it is a number."""
    try:
        return datetime.fromtimestamp(float(str(value)), UTC).isoformat(timespec="seconds")
    except ValueError:
        return str(value)
