"""The state of every month (`ride_duration.batch.status`): each state, and why."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ride_duration.batch.paths import MonthOutput
from ride_duration.batch.status import LastRun, MonthStatus, judge, stale_reasons, survey
from ride_duration.core.months import Month
from tests.support.locks import holder
from tests.support.outputs import model, publish

MARCH = Month(2021, 3)
INPUT = {"bytes": 1_474_538, "etag": None, "modified": "1796210988.6"}
MADE = {"input": dict(INPUT), "model": {"label": "m/1", "run_id": "run1"}}
NOW = datetime.now(UTC)


@pytest.mark.parametrize(
    ("input_info", "asked", "reasons"),
    [
        (INPUT, model(1), []),
        (
            {**INPUT, "bytes": 1_502_114},
            model(1),
            ["input changed (size 1,474,538 → 1,502,114)"],
        ),
        (
            {**INPUT, "etag": "b", "modified": "2"},
            model(1),
            ["input changed (modified 2026-12-02T11:29:48+00:00 → 1970-01-01T00:00:02+00:00)"],
        ),
        (
            {**INPUT, "modified": "Tue, 01 Dec 2026 10:00:00 GMT"},
            model(1),
            ["input changed (modified 2026-12-02T11:29:48+00:00 → Tue, 01 Dec 2026 10:00:00 GMT)"],
        ),
        # a store that tells nothing of a field cannot say it changed
        ({"bytes": 1_474_538, "etag": None, "modified": None}, model(1), []),
        (INPUT, model(2), ["model changed (m/1 → m/2)"]),
        (
            {**INPUT, "bytes": 1},
            model(2),
            ["input changed (size 1,474,538 → 1)", "model changed (m/1 → m/2)"],
        ),
        # the same label from another run is another model
        (INPUT, model(1, run_id="other"), ["model changed (m/1 run run1 → m/1 run other)"]),
    ],
)
def test_a_set_is_stale_when_its_input_or_model_changed(input_info, asked, reasons):
    assert stale_reasons(MADE, input_info, asked) == reasons


def test_an_etag_that_changed_is_a_changed_input():
    made = {**MADE, "input": {"bytes": 10, "etag": "a"}}
    assert stale_reasons(made, {"bytes": 10, "etag": "b"}, model(1)) == [
        "input changed (ETag a → b)"
    ]


def run(state: str, message: str = "", started: datetime | None = NOW) -> LastRun:
    return LastRun(state=state, message=message, started=started)


@pytest.mark.parametrize(
    ("content", "input_info", "last_run", "alive", "unscorable", "state", "reason"),
    [
        pytest.param(MADE, INPUT, None, False, None, "done", "", id="done"),
        pytest.param(
            MADE, INPUT, run("FAILED", "boom"), False, None, "done", "", id="done-despite-failure"
        ),
        pytest.param(
            MADE,
            None,
            None,
            False,
            None,
            "done",
            "its trip file is no longer there",
            id="input-gone",
        ),
        pytest.param(
            MADE,
            {**INPUT, "bytes": 2},
            None,
            False,
            None,
            "stale",
            "input changed (size 1,474,538 → 2)",
            id="stale",
        ),
        pytest.param(
            MADE,
            {**INPUT, "bytes": 2},
            run("CRASHED", "killed"),
            False,
            None,
            "stale",
            "input changed (size 1,474,538 → 2); last attempt failed: killed",
            id="stale-and-failed",
        ),
        pytest.param(None, INPUT, None, False, None, "missing", "never scored", id="missing"),
        pytest.param(
            None,
            INPUT,
            run("COMPLETED"),
            False,
            None,
            "missing",
            "never scored",
            id="completed-gone",
        ),
        pytest.param(
            None,
            None,
            None,
            False,
            None,
            "not published",
            "no trip file at in/green.parquet",
            id="not-published",
        ),
        pytest.param(
            None,
            INPUT,
            None,
            False,
            "fhv trips have no trip_distance column",
            "unscorable",
            "fhv trips have no trip_distance column",
            id="unscorable",
        ),
        pytest.param(
            None,
            INPUT,
            run("FAILED", "no trip file at x"),
            False,
            None,
            "failed",
            "no trip file at x",
            id="failed",
        ),
        pytest.param(
            None,
            INPUT,
            run("CANCELLED"),
            False,
            None,
            "failed",
            "last run cancelled",
            id="cancelled",
        ),
        pytest.param(
            None,
            INPUT,
            run("RUNNING"),
            True,
            None,
            "running",
            "a score run holds the month now",
            id="running",
        ),
        pytest.param(
            MADE,
            INPUT,
            run("RUNNING"),
            True,
            None,
            "running",
            "a score run holds the month now",
            id="running-over-a-set",
        ),
        pytest.param(
            None,
            INPUT,
            run("RUNNING"),
            False,
            None,
            "failed",
            "its run died without a word (Prefect still shows it running; its lock is gone)",
            id="died",
        ),
    ],
)
def test_a_month_s_state_and_reason(
    content, input_info, last_run, alive, unscorable, state, reason
):
    status = judge(
        taxi_type="green",
        month=MARCH,
        input_uri="in/green.parquet",
        output=MonthOutput("out", "green", MARCH),
        model=model(1),
        content=content,
        input_info=input_info,
        last_run=last_run,
        run_alive=alive,
        unscorable=unscorable,
    )
    assert (status.state, status.reason) == (state, reason)


# --- survey: the states looked up on real files ----------------------------------------------


def lock_of(root: Path, month: Month, **changes: object) -> None:
    """A lock file in `month`'s folder, as a run on this host writes it, with `changes`."""
    path = Path(MonthOutput(str(root), "green", month).lock.file(0))
    path.parent.mkdir(parents=True, exist_ok=True)
    content = holder(since="2026-12-06T00:00:00+00:00", **changes)
    path.write_text(json.dumps(content))


def test_survey_tells_every_state_from_the_files_and_the_last_runs(tmp_path):
    inputs, root = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    template = str(inputs / "{taxi_type}-{year}-{month:02d}.parquet")
    months = [Month(2021, m) for m in range(1, 9)]
    for month in months[:7]:  # August is not published
        (inputs / f"green-2021-{month.month:02d}.parquet").write_bytes(b"x" * 10)
    info = {"bytes": 10, "etag": None, "modified": None}
    publish(str(root), "green", Month(2021, 1), model(1), input_info=info)  # done
    publish(str(root), "green", Month(2021, 2), model(1), input_info={"bytes": 9})  # stale input
    publish(str(root), "green", Month(2021, 3), model(2), input_info=info)  # stale model
    lock_of(root, Month(2021, 5))  # a live run: this very process
    lock_of(root, Month(2021, 6), pid=2**22 + 1, pid_start="1")  # a run that was killed
    long_ago = NOW - timedelta(hours=1)
    last_runs = {
        "score-green-2021-04": LastRun("FAILED", "bad parquet", long_ago),
        "score-green-2021-05": LastRun("RUNNING", "", long_ago),
        "score-green-2021-06": LastRun("RUNNING", "", long_ago),
    }
    statuses = survey(
        taxi_types=["green"],
        months=months,
        model=model(1),
        input_uri_template=template,
        output_root=str(root),
        last_runs=last_runs,
        stale_after_seconds=600,
    )
    assert [(str(s.month), s.state) for s in statuses] == [
        ("2021-01", "done"),
        ("2021-02", "stale"),
        ("2021-03", "stale"),
        ("2021-04", "failed"),
        ("2021-05", "running"),
        ("2021-06", "failed"),
        ("2021-07", "missing"),
        ("2021-08", "not published"),
    ]
    assert statuses[0].version == "m/1"
    assert statuses[0].rows == 3
    assert statuses[1].reason == "input changed (size 9 → 10)"
    assert statuses[2].reason == "model changed (m/2 → m/1)"
    assert statuses[2].model_changed
    assert statuses[3].reason == "bad parquet"
    assert "died without a word" in statuses[5].reason


def test_a_run_prefect_calls_running_that_has_not_taken_its_lock_yet_is_alive(tmp_path):
    (tmp_path / "green-2021-03.parquet").write_bytes(b"x")
    template = str(tmp_path / "{taxi_type}-{year}-{month:02d}.parquet")

    def state(started: datetime) -> str:
        (status,) = survey(
            taxi_types=["green"],
            months=[MARCH],
            model=model(1),
            input_uri_template=template,
            output_root=str(tmp_path / "out"),
            last_runs={"score-green-2021-03": LastRun("RUNNING", "", started)},
            stale_after_seconds=600,
        )
        return status.state

    assert state(NOW - timedelta(seconds=30)) == "running"  # still loading its model
    assert state(NOW - timedelta(seconds=601)) == "failed"  # too long without a lock: dead


def test_survey_checks_unscorability_once_per_taxi_type(tmp_path):
    asked = []

    def unscorable(taxi_type: str) -> str | None:
        asked.append(taxi_type)
        return "no distance" if taxi_type == "fhv" else None

    for taxi_type in ("fhv", "green"):
        (tmp_path / f"{taxi_type}-2021-03.parquet").write_bytes(b"x")
    statuses = survey(
        taxi_types=["fhv", "green"],
        months=[Month(2021, 3), Month(2021, 4)],
        model=model(1),
        input_uri_template=str(tmp_path / "{taxi_type}-{year}-{month:02d}.parquet"),
        output_root=str(tmp_path / "out"),
        last_runs={},
        stale_after_seconds=600,
        unscorable=unscorable,
    )
    assert sorted(asked) == ["fhv", "green"]
    assert [(s.taxi_type, str(s.month), s.state) for s in statuses] == [
        ("fhv", "2021-03", "unscorable"),
        ("fhv", "2021-04", "unscorable"),  # whether the TLC published it or not
        ("green", "2021-03", "missing"),
        ("green", "2021-04", "not published"),
    ]


DRIFT = {"reference": "profile.npz", "columns": {"trip_distance": {"psi": 0.3, "js_distance": 0.1}}}


@pytest.mark.parametrize(
    ("content", "metrics", "drift"),
    [
        (None, {}, None),
        (MADE, {}, None),  # a set made before errors and drift were in its manifest
        (MADE | {"metrics": {"rmse": 6.5, "mae": None}}, {"rmse": 6.5, "mae": None}, None),
        (MADE | {"metrics": {"rmse": 6.5}, "drift": DRIFT}, {"rmse": 6.5}, DRIFT),
        (
            MADE | {"metrics": {}, "drift": {"reference": None, "columns": {}}},
            {},
            {"reference": None, "columns": {}},
        ),
    ],
    ids=["no set", "before errors", "before drift", "drift", "no reference"],
)
def test_a_month_s_current_set_tells_its_errors_and_drift(content, metrics, drift):
    status = MonthStatus(
        "green", MARCH, "done", "", "in", MonthOutput("out", "green", MARCH), content
    )
    assert (status.metrics, status.drift) == (metrics, drift)
