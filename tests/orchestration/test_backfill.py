"""The backfill flow's steps (`orchestration.backfill`): dry runs and months scored here.

With a Prefect server and workers: tests/integration/test_backfill.py.
"""

from __future__ import annotations

from prefect.states import Completed, Crashed, Failed

from ride_duration.batch.planning import PlannedMonth
from ride_duration.core.months import Month
from ride_duration.core.settings import Settings
from ride_duration.model.resolve import ModelRef
from ride_duration.orchestration import backfill
from ride_duration.orchestration.tasks import RunSetup

MODEL = ModelRef(uri="models:/m@a", resolved_uri="models:/m/3", name="m", version="3", run_id="r")


def planned(month: int, action: str = "score", reason: str = "no output yet") -> PlannedMonth:
    return PlannedMonth(
        "green", Month(2021, month), f"in/{month}", f"out/{month}/r.parquet", action, reason
    )


def run() -> backfill.Backfill:
    setup = RunSetup(Settings(), "in/{taxi_type}", "out", MODEL, 0.1)
    return backfill.Backfill(["green"], [Month(2021, 1)], setup, "backfill-green", "green")


def test_a_dry_run_says_what_would_happen_to_each_month():
    rows = backfill.dry_run_rows([planned(1), planned(2, "skip", "complete for m/3")])
    assert rows == [
        {
            "taxi_type": "green",
            "month": "2021-01",
            "action": "would score",
            "reason": "no output yet",
        },
        {"taxi_type": "green", "month": "2021-02", "action": "skip", "reason": "complete for m/3"},
    ]


def test_every_month_gets_the_pinned_model_and_the_runs_locations():
    assert run().score_parameters == {
        "model_uri": "models:/m/3",
        "input_uri_template": "in/{taxi_type}",
        "output_root": "out",
    }


def test_months_scored_here_go_on_after_a_failure_and_each_is_reported():
    states = iter([Failed(message="pickup outside\nmore"), Completed(), Crashed(message="")])
    calls, done = [], []

    def score_flow(**parameters):
        calls.append(parameters)
        return next(states)

    outcomes = backfill.score_here(
        run(), [planned(1), planned(2), planned(3)], score_flow, done.append
    )
    assert [o.state for o in outcomes] == ["failed", "completed", "crashed"]
    assert outcomes[0].error == "pickup outside"
    assert outcomes[2].error == "Run crashed."  # Prefect's words for a crash without one
    assert done == outcomes
    assert calls[1] == {
        "taxi_type": "green",
        "year": 2021,
        "month": 2,
        "return_state": True,
        **run().score_parameters,
    }
