"""Planning a backfill and summing up its outcomes: `ride_duration.batch.planning`."""

from __future__ import annotations

from pathlib import Path

import pytest

from ride_duration.batch.paths import MonthOutput
from ride_duration.batch.planning import (
    MonthOutcome,
    PlannedMonth,
    Progress,
    completed_outcome,
    decide,
    failure_summary,
    plan,
)
from ride_duration.batch.status import LastRun, MonthStatus
from ride_duration.core.months import Month
from tests.support.outputs import model, publish

MARCH = Month(2021, 3)


def status(state: str, reason: str = "why", model_changed: bool = False) -> MonthStatus:
    content = {
        "model": {"label": "m/1"},
        "rows_scored": 80_372,
        "finished_at": "2026-12-06T01:02:03+00:00",
    }
    return MonthStatus(
        "green",
        MARCH,
        state,  # type: ignore[arg-type]
        reason,
        "in.parquet",
        MonthOutput("out", "green", MARCH),
        content if state in ("done", "stale") else None,
        model_changed=model_changed,
    )


# --- what each mode does with each state ------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "state", "model_changed", "action", "reason"),
    [
        ("missing", "missing", False, "score", "missing: why"),
        ("missing", "failed", False, "score", "failed: why"),
        ("missing", "done", False, "done", "current since 2026-12-06 01:02; why"),
        ("missing", "stale", False, "skip", "stale: why (mode=stale scores it)"),
        ("missing", "stale", True, "score", "no set from this model version: why"),
        ("missing", "running", False, "skip", "running: a score run holds the month now"),
        ("missing", "not published", False, "not published", "why"),
        ("missing", "unscorable", False, "unscorable", "why"),
        ("stale", "stale", False, "score", "stale: why"),
        ("stale", "stale", True, "score", "stale: why"),
        ("stale", "missing", False, "skip", "missing: why (mode=missing scores it)"),
        ("stale", "failed", False, "skip", "failed: why (mode=failed scores it)"),
        ("stale", "done", False, "done", "current since 2026-12-06 01:02; why"),
        ("failed", "failed", False, "score", "failed: why"),
        ("failed", "missing", False, "skip", "missing: why (mode=missing scores it)"),
        ("failed", "stale", False, "skip", "stale: why (mode=stale scores it)"),
        ("failed", "done", False, "done", "current since 2026-12-06 01:02; why"),
        ("all", "done", False, "score", "mode=all re-scores every month"),
        ("all", "stale", False, "score", "mode=all re-scores every month"),
        ("all", "missing", False, "score", "mode=all re-scores every month"),
        ("all", "failed", False, "score", "mode=all re-scores every month"),
        ("all", "running", False, "skip", "running: a score run holds the month now"),
        ("all", "not published", False, "not published", "why"),
        ("all", "unscorable", False, "unscorable", "why"),
    ],
)
def test_each_mode_scores_the_months_in_its_states(mode, state, model_changed, action, reason):
    assert decide(mode, status(state, model_changed=model_changed)) == (action, reason)


def test_a_done_month_without_a_reason_says_since_when():
    assert decide("missing", status("done", "")) == ("done", "current since 2026-12-06 01:02")


# --- plans of real folders --------------------------------------------------------------------


def planned(tmp_path: Path, mode: str, **changes: object) -> list[PlannedMonth]:
    arguments = {
        "taxi_types": ["green"],
        "months": [Month(2021, m) for m in (1, 2, 3)],
        "model": model(1),
        "mode": mode,
        "input_uri_template": str(tmp_path / "in" / "{taxi_type}-{year}-{month:02d}.parquet"),
        "output_root": str(tmp_path / "out"),
        "last_runs": {},
        "stale_after_seconds": 600,
        **changes,
    }
    return plan(**arguments)  # type: ignore[arg-type]


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """Trip files of 10 bytes for green 2021-01 to 2021-03."""
    folder = tmp_path / "in"
    folder.mkdir()
    for month in (1, 2, 3):
        (folder / f"green-2021-{month:02d}.parquet").write_bytes(b"x" * 10)
    return folder


def test_a_plan_follows_each_month_s_state(tmp_path, inputs):
    root = str(tmp_path / "out")
    publish(root, "green", Month(2021, 1), model(1), input_info={"bytes": 10})
    publish(root, "green", Month(2021, 2), model(1), input_info={"bytes": 11})
    by_mode = {
        mode: [(str(p.month), p.action) for p in planned(tmp_path, mode)]
        for mode in ("missing", "stale", "failed", "all")
    }
    assert by_mode == {
        "missing": [("2021-01", "done"), ("2021-02", "skip"), ("2021-03", "score")],
        "stale": [("2021-01", "done"), ("2021-02", "score"), ("2021-03", "skip")],
        "failed": [("2021-01", "done"), ("2021-02", "skip"), ("2021-03", "skip")],
        "all": [("2021-01", "score"), ("2021-02", "score"), ("2021-03", "score")],
    }
    stale = planned(tmp_path, "stale")[1]
    assert stale.reason == "stale: input changed (size 11 → 10)"


def test_a_new_model_version_makes_every_month_missing_for_it(tmp_path, inputs):
    root = str(tmp_path / "out")
    for month in (1, 2, 3):
        publish(root, "green", Month(2021, month), model(1), input_info={"bytes": 10})
    result = planned(tmp_path, "missing", model=model(2))
    assert [p.action for p in result] == ["score"] * 3
    assert result[0].reason == "no set from this model version: model changed (m/1 → m/2)"


def test_failed_mode_reads_each_month_s_own_last_run(tmp_path, inputs):
    result = planned(
        tmp_path,
        "failed",
        taxi_types=["green", "yellow"],
        months=[MARCH],
        last_runs={"score-green-2021-03": LastRun("CRASHED", "killed")},
    )
    assert [(p.taxi_type, p.action, p.reason) for p in result] == [
        ("green", "score", "failed: killed"),
        ("yellow", "not published", f"no trip file at {tmp_path}/in/yellow-2021-03.parquet"),
    ]


def test_planning_writes_nothing(tmp_path, inputs):
    before = sorted(tmp_path.rglob("*"))
    planned(tmp_path, "missing")
    assert sorted(tmp_path.rglob("*")) == before


def test_taxi_types_multiply_the_months_taxi_type_first(tmp_path, inputs):
    result = planned(tmp_path, "missing", taxi_types=["green", "fhv"])
    assert [(p.taxi_type, str(p.month)) for p in result] == [
        ("green", "2021-01"),
        ("green", "2021-02"),
        ("green", "2021-03"),
        ("fhv", "2021-01"),
        ("fhv", "2021-02"),
        ("fhv", "2021-03"),
    ]
    assert (
        result[0].output.current
        == f"{tmp_path}/out/taxi_type=green/year=2021/month=01/predictions.parquet"
    )
    assert result[0].run_name == "score-green-2021-01"


def test_no_months_plan_nothing(tmp_path):
    assert planned(tmp_path, "all", months=[]) == []


def test_a_completed_outcome_takes_its_model_rows_and_quality_from_the_current_set(
    tmp_path, inputs
):
    publish(str(tmp_path / "out"), "green", Month(2021, 1), model(1), rows=5)
    month = planned(tmp_path, "all")[0]
    assert completed_outcome(month, seconds=4.04).as_row() == {
        "month": "2021-01",
        "taxi_type": "green",
        "state": "completed",
        "model_version": "m/1",
        "rows_scored": 5,
        "rmse": 5.0,
        "mae": None,
        "unknown_pair_share": None,
        "seconds": 4.0,
        "output": month.output.current,
        "reason": "",
    }


# --- outcomes -----------------------------------------------------------------------------


def outcome(month: str, state: str, reason: str = "", taxi_type: str = "green") -> MonthOutcome:
    return MonthOutcome(
        month, taxi_type, state, seconds=1.0, output=f"out/{month}.parquet", reason=reason
    )


@pytest.mark.parametrize(
    ("outcomes", "summary"),
    [
        (
            [
                outcome("2021-01", "completed"),
                outcome("2021-02", "failed", "no trip file at x"),
                outcome("2021-03", "skipped", "complete output for this model version"),
            ],
            "1 of 3 months failed: green 2021-02 (no trip file at x)",
        ),
        (
            [
                outcome("2021-01", "failed", "schema: lacks trip_distance"),
                outcome("2021-02", "completed"),
                outcome("2021-03", "crashed"),
                outcome("2021-01", "cancelled", "", taxi_type="yellow"),
            ],
            "3 of 4 months failed: green 2021-01 (schema: lacks trip_distance); "
            "green 2021-03 (crashed); yellow 2021-01 (cancelled)",
        ),
        (
            [outcome("2021-01", "timedout", "took longer than 3600 s")],
            "1 of 1 months failed: green 2021-01 (took longer than 3600 s)",
        ),
    ],
)
def test_failure_summary(outcomes, summary):
    assert failure_summary(outcomes) == summary


def test_failure_summary_leaves_out_completed_and_skipped_months():
    summary = failure_summary(
        [
            outcome("2021-01", "completed", "should not appear"),
            outcome("2021-02", "skipped", "complete output for this model version"),
            outcome("2021-03", "failed", "boom"),
        ]
    )
    assert "2021-01" not in summary
    assert "2021-02" not in summary
    assert "complete output" not in summary
    assert summary.startswith("1 of 3 months failed")


def test_as_row_is_a_plain_dict_of_the_fields():
    result = MonthOutcome(
        "2021-03",
        "green",
        "completed",
        "m/3",
        1234,
        rmse=6.1,
        seconds=2.5,
        output="out/x.parquet",
    )
    row = result.as_row()
    assert type(row) is dict
    assert row == {
        "month": "2021-03",
        "taxi_type": "green",
        "state": "completed",
        "model_version": "m/3",
        "rows_scored": 1234,
        "rmse": 6.1,
        "mae": None,
        "unknown_pair_share": None,
        "seconds": 2.5,
        "output": "out/x.parquet",
        "reason": "",
    }
    assert list(row) == [
        "month",
        "taxi_type",
        "state",
        "model_version",
        "rows_scored",
        "rmse",
        "mae",
        "unknown_pair_share",
        "seconds",
        "output",
        "reason",
    ]
    row["state"] = "failed"
    assert result.state == "completed"


# --- progress ---------------------------------------------------------------------------------


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("total", "finishes", "lines", "percents"),
    [
        (
            1,
            [(10.0, MonthOutcome("2021-01", "green", "completed", rows_scored=80372, seconds=9.6))],
            ["green 2021-01: completed, 80,372 rows in 9.6 s; 1 of 1 months done"],
            [100.0],
        ),
        (
            3,
            [
                (
                    12.0,
                    MonthOutcome("2021-01", "green", "completed", rows_scored=1000, seconds=11.9),
                ),
                (12.0, MonthOutcome("2021-02", "green", "failed", seconds=3.0)),
                (12.0, MonthOutcome("2021-03", "green", "completed", rows_scored=5, seconds=12.0)),
            ],
            [
                "green 2021-01: completed, 1,000 rows in 11.9 s; 1 of 3 months done, "
                "about 24 s left",
                "green 2021-02: failed in 3.0 s; 2 of 3 months done, about 12 s left",
                "green 2021-03: completed, 5 rows in 12.0 s; 3 of 3 months done",
            ],
            [33.3, 66.7, 100.0],
        ),
        (
            12,
            [(600.0, MonthOutcome("2021-01", "yellow", "crashed"))] * 2,
            [
                "yellow 2021-01: crashed; 1 of 12 months done, about 1.8 h left",
                "yellow 2021-01: crashed; 2 of 12 months done, about 1.7 h left",
            ],
            [8.3, 16.7],
        ),
        (
            3,
            [(3000.0, MonthOutcome("2021-01", "green", "completed", rows_scored=1, seconds=1.0))],
            ["green 2021-01: completed, 1 rows in 1.0 s; 1 of 3 months done, about 1.7 h left"],
            [33.3],
        ),
    ],
)
def test_progress_reports_each_finished_month_and_the_time_left(total, finishes, lines, percents):
    clock = FakeClock()
    progress = Progress(total, clock=clock)
    assert progress.percent == 0
    seen_lines, seen_percents = [], []
    for advance, finished in finishes:
        clock.now += advance
        seen_lines.append(progress.finished(finished))
        seen_percents.append(progress.percent)
    assert seen_lines == lines
    assert seen_percents == percents


def test_progress_of_nothing_to_score_is_complete():
    assert Progress(0).percent == 100.0
