"""Planning a backfill and summing up its outcomes: `ride_duration.batch.planning`."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ride_duration.batch import manifest
from ride_duration.batch.output import OUTPUT_SCHEMA
from ride_duration.batch.paths import MonthOutput
from ride_duration.batch.planning import (
    MonthOutcome,
    PlannedMonth,
    Progress,
    completed_outcome,
    failure_summary,
    plan,
)
from ride_duration.core.months import Month
from ride_duration.model.resolve import ModelRef

MODEL = ModelRef(
    uri="models:/m@a", resolved_uri="models:/m/3", name="m", version="3", run_id="run3"
)
MONTHS = [Month(2021, 1), Month(2021, 2), Month(2021, 3)]


@pytest.fixture
def output_root(tmp_path) -> Path:
    return tmp_path / "out"


@pytest.fixture
def input_folder(tmp_path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    return folder


def template(folder: Path) -> str:
    return str(folder / "{taxi_type}_tripdata_{year:04d}-{month:02d}.parquet")


def touch(path: Path) -> None:
    """An input file, or, inside an output partition, a complete month: file and manifest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if "taxi_type=" not in str(path) or path.name.startswith("."):
        path.write_bytes(b"PAR1")
        return
    pq.write_table(OUTPUT_SCHEMA.empty_table(), path)
    manifest.write(
        str(path),
        {
            "manifest_version": manifest.MANIFEST_VERSION,
            "output": {"uri": str(path), "rows": 0, "bytes": path.stat().st_size},
        },
    )


def partition(root: Path, taxi_type: str, month: Month) -> Path:
    return root / f"taxi_type={taxi_type}" / f"year={month.year:04d}" / f"month={month.month:02d}"


def planned(
    output_root: Path,
    input_folder: Path,
    *,
    mode: str,
    taxi_types: tuple[str, ...] = ("green",),
    months: list[Month] = MONTHS,
    last_states: dict[str, str | None] | None = None,
    check_inputs: bool = False,
) -> list[PlannedMonth]:
    return plan(
        taxi_types=list(taxi_types),
        months=months,
        model=MODEL,
        mode=mode,
        input_uri_template=template(input_folder),
        output_root=str(output_root),
        last_states=last_states or {},
        check_inputs=check_inputs,
    )


def actions(months: list[PlannedMonth]) -> dict[str, str]:
    return {f"{p.taxi_type} {p.month}": p.action for p in months}


# --- mode "missing" -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ([], {"2021-01": "score", "2021-02": "score", "2021-03": "score"}),
        (["2021-02/run3.parquet"], {"2021-01": "score", "2021-02": "done", "2021-03": "score"}),
        (
            ["2021-01/run3.parquet", "2021-02/run3.parquet", "2021-03/run3.parquet"],
            {"2021-01": "done", "2021-02": "done", "2021-03": "done"},
        ),
        # another model's run in the same partition does not count
        (["2021-03/run2.parquet"], {"2021-01": "score", "2021-02": "score", "2021-03": "score"}),
        (
            ["2021-03/run2.parquet", "2021-03/run3.parquet"],
            {"2021-01": "score", "2021-02": "score", "2021-03": "done"},
        ),
        # nor does a file still being written (AtomicParquetWriter's hidden staging name)
        (
            ["2021-01/.run3.parquet.0123abcd.inprogress"],
            {"2021-01": "score", "2021-02": "score", "2021-03": "score"},
        ),
        # nor another model whose run id starts like this one's
        (["2021-01/run33.parquet"], {"2021-01": "score", "2021-02": "score", "2021-03": "score"}),
    ],
)
def test_missing_scores_months_without_output_of_this_model(
    output_root, input_folder, files, expected
):
    for file in files:
        month, name = file.split("/")
        touch(partition(output_root, "green", Month.parse(month)) / name)
    result = planned(output_root, input_folder, mode="missing")
    assert {str(p.month): p.action for p in result} == expected
    for p in result:
        if p.action == "done":
            assert p.reason == "complete output for this model version"
        else:
            assert p.reason == "no complete output for this model version"


def test_missing_looks_only_at_the_month_s_own_taxi_type(output_root, input_folder):
    touch(partition(output_root, "yellow", Month(2021, 1)) / "run3.parquet")
    result = planned(output_root, input_folder, mode="missing", taxi_types=("green", "yellow"))
    assert actions(result) == {
        "green 2021-01": "score",
        "green 2021-02": "score",
        "green 2021-03": "score",
        "yellow 2021-01": "done",
        "yellow 2021-02": "score",
        "yellow 2021-03": "score",
    }


def test_planning_writes_nothing(output_root, input_folder):
    planned(output_root, input_folder, mode="missing", check_inputs=True)
    assert not output_root.exists()
    assert list(input_folder.iterdir()) == []


# --- mode "all" ---------------------------------------------------------------------------


def test_all_scores_every_month_even_complete_ones(output_root, input_folder):
    for month in MONTHS[:2]:
        touch(partition(output_root, "green", month) / "run3.parquet")
    result = planned(
        output_root,
        input_folder,
        mode="all",
        last_states={"score-green-2021-01": "COMPLETED", "score-green-2021-02": "FAILED"},
    )
    assert [p.action for p in result] == ["score", "score", "score"]
    assert {p.reason for p in result} == {"mode=all re-scores every month"}


# --- mode "failed" ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "action", "reason"),
    [
        ("FAILED", "score", "last attempt failed"),
        ("CRASHED", "score", "last attempt crashed"),
        ("CANCELLED", "score", "last attempt cancelled"),
        ("TIMEDOUT", "score", "last attempt timedout"),
        ("COMPLETED", "skip", "last attempt completed"),
        ("RUNNING", "skip", "last attempt running"),
        (None, "skip", "never attempted (mode=missing scores it)"),
    ],
)
def test_failed_rescores_months_whose_last_attempt_failed(
    output_root, input_folder, state, action, reason
):
    result = planned(
        output_root,
        input_folder,
        mode="failed",
        months=[Month(2021, 3)],
        last_states={"score-green-2021-03": state},
    )
    assert [(p.action, p.reason) for p in result] == [(action, reason)]


def test_failed_reads_each_month_s_own_run_name(output_root, input_folder):
    last_states = {
        "score-green-2021-01": "COMPLETED",
        "score-green-2021-02": "CRASHED",
        # 2021-03 was never attempted: absent from last_states
        "score-yellow-2021-01": "FAILED",
        "score-yellow-2021-02": None,
        "score-yellow-2021-03": "CANCELLED",
    }
    result = planned(
        output_root,
        input_folder,
        mode="failed",
        taxi_types=("green", "yellow"),
        last_states=last_states,
    )
    assert actions(result) == {
        "green 2021-01": "skip",
        "green 2021-02": "score",
        "green 2021-03": "skip",
        "yellow 2021-01": "score",
        "yellow 2021-02": "skip",
        "yellow 2021-03": "score",
    }
    assert result[2].reason == "never attempted (mode=missing scores it)"
    assert [p.run_name for p in result] == [
        "score-green-2021-01",
        "score-green-2021-02",
        "score-green-2021-03",
        "score-yellow-2021-01",
        "score-yellow-2021-02",
        "score-yellow-2021-03",
    ]


def test_failed_rescores_a_failed_month_even_with_output(output_root, input_folder):
    touch(partition(output_root, "green", Month(2021, 3)) / "run3.parquet")
    result = planned(
        output_root,
        input_folder,
        mode="failed",
        months=[Month(2021, 3)],
        last_states={"score-green-2021-03": "FAILED"},
    )
    assert [p.action for p in result] == ["score"]


# --- check_inputs -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["missing", "all"])
def test_check_inputs_marks_months_without_a_trip_file(output_root, input_folder, mode):
    touch(input_folder / "green_tripdata_2021-01.parquet")
    touch(input_folder / "green_tripdata_2021-03.parquet")
    result = planned(output_root, input_folder, mode=mode, check_inputs=True)
    assert [p.action for p in result] == ["score", "input missing", "score"]
    missing = input_folder / "green_tripdata_2021-02.parquet"
    assert result[1].reason == f"no trip file at {missing}"
    assert result[1].input_uri == str(missing)


def test_without_check_inputs_missing_trip_files_are_not_looked_for(output_root, input_folder):
    result = planned(output_root, input_folder, mode="missing", check_inputs=False)
    assert [p.action for p in result] == ["score", "score", "score"]


def test_check_inputs_leaves_done_and_skipped_months_alone(output_root, input_folder):
    # no trip file at all: only months that would be scored become "input missing"
    touch(partition(output_root, "green", Month(2021, 1)) / "run3.parquet")
    result = planned(output_root, input_folder, mode="missing", check_inputs=True)
    assert [p.action for p in result] == ["done", "input missing", "input missing"]
    assert result[0].reason == "complete output for this model version"

    result = planned(
        output_root,
        input_folder,
        mode="failed",
        check_inputs=True,
        last_states={"score-green-2021-01": "COMPLETED", "score-green-2021-02": "FAILED"},
    )
    assert [p.action for p in result] == ["skip", "input missing", "skip"]


# --- several taxi types, URIs -------------------------------------------------------------


def test_taxi_types_multiply_the_months_taxi_type_first(output_root, input_folder):
    result = planned(
        output_root,
        input_folder,
        mode="all",
        taxi_types=("yellow", "green", "fhvhv"),
        months=[Month(2020, 12), Month(2021, 1)],
    )
    assert [(p.taxi_type, str(p.month)) for p in result] == [
        ("yellow", "2020-12"),
        ("yellow", "2021-01"),
        ("green", "2020-12"),
        ("green", "2021-01"),
        ("fhvhv", "2020-12"),
        ("fhvhv", "2021-01"),
    ]


def test_planned_uris(output_root, input_folder):
    result = planned(
        output_root, input_folder, mode="all", taxi_types=("green", "fhv"), months=[Month(2021, 3)]
    )
    green, fhv = result
    assert green.input_uri == str(input_folder / "green_tripdata_2021-03.parquet")
    assert fhv.input_uri == str(input_folder / "fhv_tripdata_2021-03.parquet")
    assert green.output_uri == f"{output_root}/taxi_type=green/year=2021/month=03/run3.parquet"
    assert fhv.output_uri == f"{output_root}/taxi_type=fhv/year=2021/month=03/run3.parquet"
    for p in result:
        output = MonthOutput.of(str(output_root), p.taxi_type, Month(2021, 3), MODEL)
        assert p.output_uri == output.data
        assert p.run_name == f"score-{p.taxi_type}-2021-03"


def test_no_months_plan_nothing(output_root, input_folder):
    assert planned(output_root, input_folder, mode="all", months=[]) == []
    assert planned(output_root, input_folder, mode="all", taxi_types=()) == []


# --- outcomes -----------------------------------------------------------------------------


def outcome(month: str, state: str, error: str = "", taxi_type: str = "green") -> MonthOutcome:
    return MonthOutcome(
        month, taxi_type, state, seconds=1.0, output=f"out/{month}.parquet", error=error
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
        "2021-03", "green", "completed", 1234, rmse=6.1, seconds=2.5, output="out/x.parquet"
    )
    row = result.as_row()
    assert type(row) is dict
    assert row == {
        "month": "2021-03",
        "taxi_type": "green",
        "state": "completed",
        "rows_scored": 1234,
        "rmse": 6.1,
        "mae": None,
        "unknown_pair_share": None,
        "seconds": 2.5,
        "output": "out/x.parquet",
        "error": "",
    }
    assert list(row) == [
        "month",
        "taxi_type",
        "state",
        "rows_scored",
        "rmse",
        "mae",
        "unknown_pair_share",
        "seconds",
        "output",
        "error",
    ]
    row["state"] = "failed"
    assert result.state == "completed"


@pytest.mark.parametrize(
    "damage",
    ["no manifest", "manifest of another size", "manifest not json", "file gone"],
)
def test_a_month_is_done_only_with_a_manifest_that_matches_its_file(
    output_root, input_folder, damage
):
    path = partition(output_root, "green", Month(2021, 1)) / "run3.parquet"
    touch(path)
    manifest_path = Path(MonthOutput(str(path)).manifest)
    if damage == "no manifest":
        manifest_path.unlink()
    elif damage == "manifest of another size":
        manifest_path.write_text(manifest_path.read_text().replace('"bytes": ', '"bytes": 1'))
    elif damage == "manifest not json":
        manifest_path.write_text("{")
    else:
        path.unlink()
    result = planned(output_root, input_folder, mode="missing")
    assert [p.action for p in result] == ["score", "score", "score"]


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
            [(10.0, MonthOutcome("2021-01", "green", "completed", 80372, seconds=9.6))],
            ["green 2021-01: completed, 80,372 rows in 9.6 s; 1 of 1 months done"],
            [100.0],
        ),
        (
            3,
            [
                (12.0, MonthOutcome("2021-01", "green", "completed", 1000, seconds=11.9)),
                (12.0, MonthOutcome("2021-02", "green", "failed", seconds=3.0)),
                (12.0, MonthOutcome("2021-03", "green", "completed", 5, seconds=12.0)),
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
            [(3000.0, MonthOutcome("2021-01", "green", "completed", 1, seconds=1.0))],
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


def test_a_completed_outcome_takes_rows_and_quality_from_the_manifest(output_root, input_folder):
    path = partition(output_root, "green", Month(2021, 1)) / "run3.parquet"
    touch(path)
    manifest_path = Path(MonthOutput(str(path)).manifest)
    content = json.loads(manifest_path.read_text())
    content["rows_scored"] = 80372
    content["metrics"] = {"rmse": 6.5, "mae": 4.25, "mean_error": 1.0, "unknown_pair_share": 0.09}
    manifest_path.write_text(json.dumps(content))
    month = planned(output_root, input_folder, mode="all")[0]
    outcome = completed_outcome(month, seconds=4.04)
    assert outcome.as_row() == {
        "month": "2021-01",
        "taxi_type": "green",
        "state": "completed",
        "rows_scored": 80372,
        "rmse": 6.5,
        "mae": 4.25,
        "unknown_pair_share": 0.09,
        "seconds": 4.0,
        "output": str(path),
        "error": "",
    }
