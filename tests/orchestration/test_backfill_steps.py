"""The backfill flow's steps (`orchestration.backfill_steps`): dry runs, months scored here, the
closing table and the state of every month.

With a Prefect server and workers: tests/integration/test_backfill.py.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prefect.states import Completed, Crashed, Failed

from ride_duration.batch import manifest
from ride_duration.batch.paths import MonthOutput
from ride_duration.batch.planning import MonthOutcome, PlannedMonth, completed_outcome
from ride_duration.batch.status import LastRun, MonthStatus
from ride_duration.core.errors import BackfillFailedError
from ride_duration.core.months import Month
from ride_duration.core.settings import Settings
from ride_duration.model import service
from ride_duration.model.resolve import ModelRef
from ride_duration.orchestration import backfill_steps, deployments
from ride_duration.orchestration.tasks import RunSetup
from tests.support.outputs import model, publish

MODEL = ModelRef(uri="models:/m@a", resolved_uri="models:/m/3", name="m", version="3", run_id="r")
CURRENT = {"model": {"label": "m/2"}, "rows_scored": 1_234, "finished_at": "2026-12-01T10:00:00"}
ERRORS = {"rmse": 6.5, "mae": 4.25, "unknown_pair_share": 0.125}
NO_REFERENCE = {"reference": None, "columns": {}}
BLANK = {"drift": "", "drift_column": "", "psi": None, "js_distance": None}


def drift(**psi: float | None) -> dict:
    """A manifest's drift section with these columns' PSI (their JS distance: a tenth of it)."""
    return {
        "reference": "profile.npz",
        "columns": {
            column: {"psi": value, "js_distance": None if value is None else value / 10}
            for column, value in psi.items()
        },
    }


def largest(drift: str, column: str, psi: float) -> dict:
    """A row's cells of a largest drift on `column` (its JS distance: a tenth of its PSI)."""
    return {"drift": drift, "drift_column": column, "psi": psi, "js_distance": psi / 10}


def planned(
    month: int,
    action: str = "score",
    reason: str = "missing: never scored",
    current: dict | None = None,
    root: str = "out",
) -> PlannedMonth:
    state = "done" if current else "missing"
    output = MonthOutput(root, "green", Month(2021, month))
    status = MonthStatus("green", Month(2021, month), state, "", f"in/{month}", output, current)
    return PlannedMonth(status, action, reason)


def row(month: int, state: str, reason: str, **changes: object) -> dict:
    """A row of the backfill's table: a month left alone unless `changes` say otherwise."""
    return {
        "month": f"2021-{month:02d}",
        "taxi_type": "green",
        "state": state,
        "model_version": "",
        "rows_scored": None,
        "rmse": None,
        "mae": None,
        "unknown_pair_share": None,
        **BLANK,
        "seconds": None,
        "output": f"out/taxi_type=green/year=2021/month={month:02d}/predictions.parquet",
        "reason": reason,
        **changes,
    }


def run(root: str = "out", template: str = "in/{taxi_type}") -> backfill_steps.Backfill:
    setup = RunSetup(Settings(), template, root, MODEL, 0.1)
    return backfill_steps.Backfill(["green"], [Month(2021, 1)], setup, "backfill-green", "green")


@pytest.mark.parametrize(
    ("months", "rows"),
    [
        ([], []),
        ([planned(1)], [row(1, "would score", "missing: never scored")]),
        (
            [
                planned(2, "done", "current since 2026-12-01 10:00", CURRENT),
                planned(3, "score", "stale: model changed (m/2 → m/3)", CURRENT),
                planned(4, "skip", "running: a score run holds the month now"),
                planned(5, "not published", "no trip file at in/5"),
                planned(6, "unscorable", "the green layout lacks airport_fee"),
            ],
            [
                row(
                    2,
                    "done",
                    "current since 2026-12-01 10:00",
                    model_version="m/2",
                    rows_scored=1_234,
                ),
                row(
                    3,
                    "would score",
                    "stale: model changed (m/2 → m/3)",
                    model_version="m/2",
                    rows_scored=1_234,
                ),
                row(4, "skip", "running: a score run holds the month now"),
                row(5, "not published", "no trip file at in/5"),
                row(6, "unscorable", "the green layout lacks airport_fee"),
            ],
        ),
    ],
    ids=["nothing", "one month to score", "a month of each action"],
)
def test_a_dry_run_says_what_would_happen_to_each_month_as_a_real_run_does(
    months: list[PlannedMonth], rows: list[dict]
):
    assert backfill_steps.dry_run_rows(months, 0.25) == rows


@pytest.mark.parametrize(
    ("current", "warn_psi", "changes"),
    [
        (None, 0.25, {}),
        (CURRENT, 0.25, {}),  # a set made before errors and drift were measured
        (CURRENT | {"metrics": ERRORS, "drift": NO_REFERENCE}, 0.25, {"drift": "no reference"}),
        (
            CURRENT | {"metrics": ERRORS, "drift": drift(trip_distance=0.08, DOLocationID=0.02)},
            0.25,
            largest("0.08 trip_distance", "trip_distance", 0.08),
        ),
        (
            CURRENT | {"metrics": ERRORS, "drift": drift(trip_distance=0.08, DOLocationID=0.5)},
            0.25,
            largest("0.50 DOLocationID !", "DOLocationID", 0.5),
        ),
        (
            CURRENT | {"metrics": ERRORS, "drift": drift(DOLocationID=0.5)},
            None,
            largest("0.50 DOLocationID", "DOLocationID", 0.5),
        ),
        (  # 0 rows scored: nothing measured
            CURRENT | {"metrics": dict.fromkeys(ERRORS), "drift": drift(trip_distance=None)},
            0.25,
            {"drift": "n/a"},
        ),
    ],
    ids=[
        "no set",
        "a set from before drift",
        "no reference",
        "drift",
        "above WARN_PSI",
        "no WARN_PSI",
        "no rows scored",
    ],
)
def test_a_dry_run_shows_each_current_sets_errors_and_drift(
    current: dict | None, warn_psi: float | None, changes: dict
):
    (shown,) = backfill_steps.dry_run_rows([planned(1, current=current)], warn_psi)
    expected = row(1, "would score", "missing: never scored", **changes)
    if current is not None:
        expected |= {"model_version": "m/2", "rows_scored": 1_234}
        expected |= current.get("metrics") or {}
    assert shown == expected
    assert list(shown)[list(shown).index("unknown_pair_share") + 1] == "drift"  # then seconds


def test_a_dry_run_row_shows_no_credentials():
    (shown,) = backfill_steps.dry_run_rows([planned(1, root="s3://user:secret@b/out")], 0.25)
    assert shown["output"] == "s3://b/out/taxi_type=green/year=2021/month=01/predictions.parquet"


def test_every_month_gets_the_pinned_model_and_the_runs_locations():
    assert run().score_parameters == {
        "model_uri": "models:/m/3",
        "input_uri_template": "in/{taxi_type}",
        "output_root": "out",
    }


def test_months_scored_here_go_on_after_a_failure_and_each_is_reported():
    states = iter([Failed(message="pickup outside\nmore"), Completed(), Crashed(message="")])
    calls, done = [], []

    def score_flow(**parameters: object) -> object:
        calls.append(parameters)
        return next(states)

    outcomes = backfill_steps.score_here(
        run(), [planned(1), planned(2), planned(3)], score_flow, done.append
    )
    assert [o.state for o in outcomes] == ["failed", "completed", "crashed"]
    assert outcomes[0].reason == "pickup outside"
    assert outcomes[2].reason == "Run crashed."  # Prefect's words for a crash without one
    assert outcomes[0].output == "out/taxi_type=green/year=2021/month=01/predictions.parquet"
    assert done == outcomes
    assert calls[1] == {
        "taxi_type": "green",
        "year": 2021,
        "month": 2,
        "return_state": True,
        **run().score_parameters,
    }


class Artifacts:
    """The Prefect artifacts and log lines of a step, kept instead of sent."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tables: list[dict] = []
        monkeypatch.setattr(backfill_steps, "create_table_artifact", self.table)
        monkeypatch.setattr(backfill_steps, "get_run_logger", lambda: logging.getLogger("backfill"))

    def table(self, **artifact: object) -> None:
        self.tables.append(artifact)


def scored(month: int, state: str, reason: str = "") -> MonthOutcome:
    return MonthOutcome(
        month=f"2021-{month:02d}",
        taxi_type="green",
        state=state,
        rows_scored=10 if state == "completed" else None,
        output=f"out/taxi_type=green/year=2021/month={month:02d}/predictions.parquet",
        reason=reason,
    )


@pytest.mark.parametrize(
    ("outcomes", "rows", "failure"),
    [
        ([], [row(1, "done", "done: current"), row(2, "done", "done: current")], None),
        (
            [scored(1, "completed"), scored(2, "completed")],
            [row(1, "completed", "", rows_scored=10), row(2, "completed", "", rows_scored=10)],
            None,
        ),
        (
            [scored(2, "failed", "pickup outside")],
            [row(1, "done", "done: current"), row(2, "failed", "pickup outside")],
            "1 of 2 months failed: green 2021-02 (pickup outside)",
        ),
        (
            [scored(1, "crashed"), scored(2, "failed", "busy")],
            [row(1, "crashed", ""), row(2, "failed", "busy")],
            "2 of 2 months failed: green 2021-01 (crashed); green 2021-02 (busy)",
        ),
    ],
    ids=["all left alone", "all completed", "one failed", "all failed"],
)
def test_a_backfill_ends_with_every_months_row_even_when_one_failed(
    monkeypatch: pytest.MonkeyPatch,
    outcomes: list[MonthOutcome],
    rows: list[dict],
    failure: str | None,
):
    artifacts = Artifacts(monkeypatch)
    months = [planned(1, "done", "done: current"), planned(2, "done", "done: current")]
    if failure is None:
        assert backfill_steps.finish(run(), months, outcomes) == rows
    else:
        with pytest.raises(BackfillFailedError) as failed:
            backfill_steps.finish(run(), months, outcomes)
        assert str(failed.value) == failure
        assert failed.value.rows == rows  # the table is shown on failure too
    assert artifacts.tables == [
        {"table": rows, "key": "backfill-green", "description": "Backfill green with m/3"}
    ]


@pytest.mark.parametrize(
    ("published", "last_run", "needed", "state", "reason"),
    [
        (True, None, None, "missing", "never scored"),
        (False, None, None, "not published", "no trip file at {input}"),
        (True, LastRun("FAILED", "pickup outside"), None, "failed", "pickup outside"),
        (True, LastRun("COMPLETED"), None, "missing", "never scored"),
        (True, None, ["pickup_datetime", "trip_distance"], "missing", "never scored"),
        (
            False,
            None,
            ["pickup_datetime", "airport_fee"],
            "unscorable",
            "green trips have no airport_fee column, but the model needs it: score green with "
            "a model trained without airport_fee",
        ),
    ],
)
def test_the_state_of_every_month_is_a_row_and_a_table_artifact(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    published: bool,
    last_run: LastRun | None,
    needed: list[str] | None,
    state: str,
    reason: str,
):
    artifacts = Artifacts(monkeypatch)
    input_uri = tmp_path / "in" / "green-2021-01.parquet"
    if published:
        input_uri.parent.mkdir()
        input_uri.write_bytes(b"PAR1")
    asked: list[list[str]] = []

    async def last_runs(names: list[str]) -> dict[str, LastRun]:
        asked.append(names)
        return {"score-green-2021-01": last_run} if last_run else {}

    monkeypatch.setattr(deployments, "last_runs", last_runs)
    monkeypatch.setattr(service, "needed_fields", lambda model: needed)
    root = str(tmp_path / "out")
    rows = backfill_steps.status_rows(
        run(root, str(tmp_path / "in" / "{taxi_type}-{year}-{month:02d}.parquet"))
    )
    assert rows == [
        {
            "taxi_type": "green",
            "month": "2021-01",
            "state": state,
            "model_version": "",
            "rows_scored": None,
            "rmse": None,
            "mae": None,
            "unknown_pair_share": None,
            **BLANK,
            "published": "",
            "reason": reason.format(input=input_uri),
            "output": f"{root}/taxi_type=green/year=2021/month=01/predictions.parquet",
        }
    ]
    assert asked == [["score-green-2021-01"]]
    assert artifacts.tables == [
        {"table": rows, "key": "status-green", "description": "State of green for m/3"}
    ]
    assert not (tmp_path / "out").exists()  # a look at the months writes nothing


def published(root: Path, month: int, section: dict | None) -> MonthOutput:
    """A month of green 2021 published by m/3 (rmse 5.0) whose manifest has this drift
    section (None: none, as a manifest from before drift was measured)."""
    output = publish(str(root), "green", Month(2021, month), model(3))
    content = manifest.current(output)
    assert content is not None
    del content["drift"]
    manifest.write(output, content if section is None else content | {"drift": section})
    return output


@pytest.mark.parametrize(
    ("section", "changes"),
    [
        (None, {}),
        (NO_REFERENCE, {"drift": "no reference"}),
        (
            drift(trip_distance=0.3, PULocationID=0.1),
            largest("0.30 trip_distance !", "trip_distance", 0.3),
        ),
        (drift(actual_duration=0.1), largest("0.10 actual_duration", "actual_duration", 0.1)),
    ],
    ids=["a set from before drift", "no reference", "above WARN_PSI", "drift"],
)
def test_a_month_scored_shows_the_errors_and_drift_its_run_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, section: dict | None, changes: dict
):
    Artifacts(monkeypatch)
    root = str(tmp_path / "out")
    published(tmp_path / "out", 1, section)
    month = planned(1, root=root)  # planned before its run published the set
    outcome = completed_outcome(month, seconds=4.0)
    [shown] = backfill_steps.finish(run(root), [month], [outcome])
    assert shown == (
        row(1, "completed", "", model_version="m/3", rows_scored=3, rmse=5.0, seconds=4.0)
        | {"output": f"{root}/taxi_type=green/year=2021/month=01/predictions.parquet"}
        | changes
    )


REFUSED = (
    "green 2021-02 failed its checks: trip_distance psi 0.61 > MAX_PSI 0.5; nothing was published"
)


def test_a_month_left_alone_shows_its_sets_errors_and_drift_and_a_failed_one_none(
    monkeypatch: pytest.MonkeyPatch,
):
    Artifacts(monkeypatch)
    current = CURRENT | {"metrics": ERRORS, "drift": drift(trip_distance=0.5)}
    months = [planned(1, "done", "current", current), planned(2, "score", "stale", current)]
    with pytest.raises(BackfillFailedError) as failed:
        backfill_steps.finish(run(), months, [scored(2, "failed", REFUSED)])
    assert failed.value.rows == [
        row(
            1,
            "done",
            "current",
            model_version="m/2",
            rows_scored=1_234,
            **ERRORS,
            **largest("0.50 trip_distance !", "trip_distance", 0.5),
        ),
        row(2, "failed", REFUSED),  # nothing published: no figures
    ]
    assert str(failed.value) == f"1 of 2 months failed: green 2021-02 ({REFUSED})"


def test_the_state_of_a_month_with_a_set_shows_its_errors_and_drift(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    Artifacts(monkeypatch)
    monkeypatch.setattr(deployments, "last_runs", _no_runs)
    monkeypatch.setattr(service, "needed_fields", lambda model: None)
    published(tmp_path / "out", 1, drift(PULocationID=0.04, trip_distance=0.02))
    [shown] = backfill_steps.status_rows(
        run(str(tmp_path / "out"), str(tmp_path / "in-{year}-{month}"))
    )
    assert (shown["model_version"], shown["rows_scored"]) == ("m/3", 3)
    assert (shown["rmse"], shown["mae"], shown["unknown_pair_share"]) == (5.0, None, None)
    assert {key: shown[key] for key in BLANK} == largest("0.04 PULocationID", "PULocationID", 0.04)


async def _no_runs(names: list[str]) -> dict[str, LastRun]:
    return {}
