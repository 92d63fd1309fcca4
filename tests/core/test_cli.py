"""Command lines: argument errors of `score.py` / `train.py`, and `ride_duration.core.cli`."""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import time

import pytest

import backfill
import score
import train
from ride_duration.core import cli
from ride_duration.core.errors import (
    ConfigurationError,
    InputNotFoundError,
    ModelNotFoundError,
    SchemaError,
    ScoringError,
)
from ride_duration.core.months import current_month
from ride_duration.orchestration import flows
from tests.conftest import HEAVY, REPO

MAINS = {"score": score.main, "train": train.main}


@pytest.mark.parametrize("program", list(MAINS))
@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["green", "2021", "13"], "13 is not between 1 and 12"),
        (["green", "2021", "0"], "0 is not between 1 and 12"),
        (["green", "2021", "-1"], "-1 is not between 1 and 12"),
        (["green", "2021", "march"], "'march' is not a whole number"),
        (["green", "abc", "3"], "'abc' is not a whole number"),
        (["green", "2008", "3"], "2008 is not between 2009 and 2100"),
        (["green", "2021.5", "3"], "'2021.5' is not a whole number"),
        (["purple", "2021", "3"], "invalid choice: 'purple'"),
        (["Green", "2021", "3"], "invalid choice: 'Green'"),
        (["green", "2021"], "the following arguments are required: month"),
        ([], "the following arguments are required"),
        (["green", "2021", "3", "extra"], "unrecognized arguments: extra"),
        (["green", "2021", "3", "--no-such-option"], "unrecognized arguments: --no-such-option"),
    ],
)
def test_argument_errors_exit_with_code_2(program, argv, says, capsys):
    with pytest.raises(SystemExit) as raised:
        MAINS[program](argv)
    assert raised.value.code == 2
    error = capsys.readouterr().err
    assert says in error
    assert f"usage: {program}.py" in error


def test_train_rejects_an_unknown_estimator(capsys):
    with pytest.raises(SystemExit) as raised:
        train.main(["green", "2021", "1", "--estimator", "xgboost"])
    assert raised.value.code == 2
    assert "invalid choice: 'xgboost'" in capsys.readouterr().err


@pytest.mark.parametrize("program", list(MAINS))
def test_help_exits_with_code_0(program, capsys):
    with pytest.raises(SystemExit) as raised:
        MAINS[program](["--help"])
    assert raised.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: {program}.py" in out
    for taxi_type in ("yellow", "green", "fhv", "fhvhv"):
        assert taxi_type in out


# --- cli.run and cli.bounded_int -----------------------------------------------------------

LOGGERS = ("prefect", "prefect.flow_runs", "prefect.task_runs", "")


@pytest.fixture
def restore_log_filters():
    """cli.run adds a filter to existing log handlers; take it off again after the test."""
    before = {
        handler: list(handler.filters)
        for name in LOGGERS
        for handler in logging.getLogger(name).handlers
    }
    yield
    for handler, filters in before.items():
        handler.filters[:] = filters


def fail_with(error: BaseException):
    def main() -> None:
        raise error

    return main


@pytest.mark.usefixtures("restore_log_filters")
@pytest.mark.parametrize(
    "error",
    [
        InputNotFoundError("no trip file at x"),
        SchemaError("the green trip file lacks column(s) trip_distance"),
        ModelNotFoundError("cannot find model models:/m@prod"),
        ConfigurationError("BATCH_SIZE must be a whole number, got 'x'"),
        ScoringError("anything the user can fix"),
    ],
)
def test_run_turns_a_scoring_error_into_one_line_and_code_2(error, capsys):
    assert cli.run(fail_with(error), debug=False) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: {error}\n"
    assert captured.out == ""


@pytest.mark.usefixtures("restore_log_filters")
def test_run_turns_ctrl_c_into_one_line_and_code_130(capsys):
    def interrupted() -> None:
        raise KeyboardInterrupt

    assert cli.run(interrupted, debug=False) == 130
    assert capsys.readouterr().err == "error: interrupted (Ctrl-C)\n"
    with pytest.raises(KeyboardInterrupt):
        cli.run(interrupted, debug=True)


@pytest.mark.parametrize(
    ("number", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"]
)
def test_a_process_whose_libraries_hang_after_a_signal_still_ends(number, code):
    """The handler here swallows the signal, as a deadlocked library would never finish: the
    guard ends the process anyway, with 128 + the signal's number."""
    program = (
        "import signal, sys, time\n"
        "from ride_duration.core import cli\n"
        "cli.end_within(0.2)\n"
        f"signal.signal({int(number)}, lambda *_: None)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", program], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline() == "ready\n"
        process.send_signal(number)
        assert process.wait(timeout=20) == code
    finally:
        process.kill()


def test_run_returns_0_on_success():
    calls = []
    assert cli.run(lambda: calls.append(1) or {"summary": 1}, debug=False) == 0
    assert calls == [1]


def test_run_with_debug_raises_the_scoring_error():
    error = SchemaError("bad file")
    with pytest.raises(SchemaError, match="bad file"):
        cli.run(fail_with(error), debug=True)


@pytest.mark.usefixtures("restore_log_filters")
@pytest.mark.parametrize("debug", [False, True])
def test_run_lets_a_bug_through(debug):
    with pytest.raises(ZeroDivisionError):
        cli.run(fail_with(ZeroDivisionError("bug")), debug=debug)


@pytest.mark.usefixtures("restore_log_filters")
def test_run_hides_tracebacks_of_existing_log_handlers():
    handler = logging.StreamHandler()
    logger = logging.getLogger("prefect.flow_runs")
    logger.addHandler(handler)
    try:
        cli.run(lambda: None, debug=False)
        try:
            raise ValueError("boom")
        except ValueError:
            record = logger.makeRecord(
                logger.name, logging.ERROR, __file__, 1, "failed", None, sys.exc_info()
            )
        assert handler.filter(record)
        assert record.exc_info is None
    finally:
        logger.removeHandler(handler)


@pytest.mark.parametrize(
    ("name", "level", "debug", "shown"),
    [
        ("urllib3.connectionpool", logging.WARNING, False, False),  # "Retrying (Retry(...))"
        ("EventsWorker", logging.WARNING, False, False),  # "Still processing items"
        ("APILogWorker", logging.WARNING, False, False),
        ("urllib3.connectionpool", logging.ERROR, False, True),
        ("EventsWorker", logging.WARNING, True, True),  # --debug shows them
        ("ride_duration.batch.month", logging.WARNING, False, True),
    ],
)
def test_library_chatter_stays_off_the_console(name, level, debug, shown):
    loggers = [logging.getLogger(chatty) for chatty in ("urllib3", "EventsWorker", "APILogWorker")]
    before = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.NOTSET)  # setLevel, not the attribute: it clears their caches
    try:
        cli.run(lambda: None, debug=debug)
        assert logging.getLogger(name).isEnabledFor(level) is shown
    finally:
        for logger, was in zip(loggers, before, strict=True):
            logger.setLevel(was)


@pytest.mark.parametrize(
    ("low", "high", "text", "value"),
    [(1, 12, "1", 1), (1, 12, "12", 12), (1, 12, " 7 ", 7), (2009, 2100, "2021", 2021)],
)
def test_bounded_int_accepts(low, high, text, value):
    assert cli.bounded_int(low, high)(text) == value


@pytest.mark.parametrize(
    ("low", "high", "text", "says"),
    [
        (1, 12, "0", "0 is not between 1 and 12"),
        (1, 12, "13", "13 is not between 1 and 12"),
        (1, 12, "x", "'x' is not a whole number"),
        (1, 12, "", "'' is not a whole number"),
        (1, 12, "3.0", "'3.0' is not a whole number"),
    ],
)
def test_bounded_int_rejects(low, high, text, says):
    with pytest.raises(argparse.ArgumentTypeError, match=says):
        cli.bounded_int(low, high)(text)


# --- backfill.py: argument errors, and month errors reported before Prefect starts -------------


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (
            ["purple", "2021-01", "2021-03"],
            "unknown taxi type 'purple': choose from yellow, green, fhv, fhvhv",
        ),
        (
            ["green,purple", "2021-01", "2021-03"],
            "unknown taxi type 'purple': choose from yellow, green, fhv, fhvhv",
        ),
        ([",", "2021-01", "2021-03"], "unknown taxi type ','"),
        (["green", "2021-13", "2021-12"], "'2021-13' is not a month: write it as YYYY-MM"),
        (["green", "2021/01", "2021-03"], "'2021/01' is not a month: write it as YYYY-MM"),
        (["green", "2021-01", "march"], "'march' is not a month: write it as YYYY-MM"),
        (
            ["green", "2021-01", "2021-03", "--max-concurrency", "0"],
            "0 is not between 1 and 64",
        ),
        (
            ["green", "2021-01", "2021-03", "--max-concurrency", "65"],
            "65 is not between 1 and 64",
        ),
        (["green", "2021-01", "2021-03", "--mode", "sometimes"], "invalid choice: 'sometimes'"),
        (["green", "2021-01"], "the following arguments are required: end"),
    ],
)
def test_backfill_argument_errors_exit_with_code_2(argv, says, capsys):
    with pytest.raises(SystemExit) as raised:
        backfill.main(argv)
    assert raised.value.code == 2
    error = capsys.readouterr().err
    assert says in error
    assert "usage: backfill.py" in error


@pytest.mark.usefixtures("restore_log_filters")
@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            ["green", "2021-05", "2021-01"],
            "error: the end month 2021-01 is before the start month 2021-05",
        ),
        (
            ["green,yellow", "2021-5", "2020-12", "--mode", "all"],
            "error: the end month 2020-12 is before the start month 2021-05",
        ),
        (
            ["green", "2008-12", "2009-02"],
            "error: 2008-12 is before 2009, when TLC trip records begin",
        ),
        (["green", "2021-01", "2099-01"], "error: 2099-01 is not over yet: "),
        (["green", "2099-01", "2099-03", "--dry-run"], "error: 2099-03 is not over yet: "),
    ],
)
def test_backfill_month_errors_fail_fast_before_prefect(argv, line, capsys, monkeypatch):
    monkeypatch.delenv("SCHEDULE_TIMEZONE", raising=False)
    started = time.perf_counter()
    assert backfill.main(argv) == 2
    seconds = time.perf_counter() - started
    captured = capsys.readouterr()
    assert captured.err.startswith(line)
    assert captured.err.count("\n") == 1
    assert captured.err.endswith("\n")
    assert captured.out == ""
    # Prefect (an ephemeral server, a flow run) takes seconds to start: it must not have.
    assert seconds < 0.5


@pytest.mark.usefixtures("restore_log_filters")
def test_backfill_future_error_names_the_last_complete_month(capsys, monkeypatch):
    monkeypatch.delenv("SCHEDULE_TIMEZONE", raising=False)
    assert backfill.main(["green", "2021-01", "2099-01"]) == 2
    last = current_month("America/New_York").shift(-1)
    assert capsys.readouterr().err in {
        f"error: 2099-01 is not over yet: the last complete month is {month}\n"
        # the month may turn between the backfill's check and this one
        for month in (last, last.shift(-1))
    }


# --- the flows' parameters: what the Prefect UI's custom-run form is built from ----------------


def _schema(flow) -> dict:
    from prefect.utilities.callables import parameter_schema

    return parameter_schema(flow).model_dump_for_openapi()


def test_a_custom_score_run_needs_the_taxi_type_year_and_month_and_nothing_else():
    schema = _schema(flows.score)
    assert schema["required"] == ["taxi_type", "year", "month"]
    assert {name: p.get("default") for name, p in schema["properties"].items()} == {
        "taxi_type": None,
        "year": None,
        "month": None,
        "model_uri": "",
        "input_uri_template": "",
        "output_root": "",
    }


@pytest.mark.parametrize(
    ("flow", "parameter", "kind"),
    [
        ("score", "taxi_type", "string"),
        ("score", "year", "integer"),
        ("score", "month", "integer"),
        ("score", "model_uri", "string"),
        ("backfill", "taxi_types", "array"),
        ("backfill", "start", "string"),
        ("backfill", "max_concurrency", "integer"),
        ("backfill", "dry_run", "boolean"),
        ("backfill", "deployment", "string"),
        ("score_scheduled_month", "taxi_type", "string"),
    ],
)
def test_every_parameter_is_one_plain_type_with_a_description(flow, parameter, kind):
    """No `anyOf` (the UI renders it as a type toggle) and a description for the form."""
    field = _schema(getattr(flows, flow))["properties"][parameter]
    assert "anyOf" not in field
    assert field["type"] == kind
    assert field["description"]


@pytest.mark.parametrize(
    ("parameter", "low", "high"),
    [("year", 2009, 2100), ("month", 1, 12)],
)
def test_the_year_and_month_bounds_are_in_the_schema_and_the_description(parameter, low, high):
    field = _schema(flows.score)["properties"][parameter]
    assert (field["minimum"], field["maximum"]) == (low, high)
    assert f"{low} to {high}" in field["description"]


def test_a_backfill_needs_at_least_one_taxi_type_and_months_as_yyyy_mm():
    properties = _schema(flows.backfill)["properties"]
    assert properties["taxi_types"]["minItems"] == 1
    assert properties["taxi_types"]["items"]["enum"] == ["yellow", "green", "fhv", "fhvhv"]
    for name in ("start", "end"):
        assert properties[name]["pattern"] == r"^\d{4}-(0[1-9]|1[0-2])$"
        assert "YYYY-MM" in properties[name]["description"]


# --- what a command imports: --help and argument errors answer before the heavy libraries ----


def imported_modules(*args: str) -> tuple[int, set[str]]:
    """The exit code of `python ARGS` and the top-level modules it imported."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    names = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return result.returncode, names


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["score.py", "--help"], 0),
        (["score.py", "green", "2021", "13"], 2),
        (["score.py", "purple", "2021", "3"], 2),
        (["backfill.py", "--help"], 0),
        (["backfill.py", "green", "2021-03", "2021-01"], 2),
        (["backfill.py", "green", "2021-01", "2099-01"], 2),
        (["train.py", "--help"], 0),
    ],
)
def test_help_and_argument_errors_load_no_heavy_library(args, code):
    returncode, modules = imported_modules(*args)
    assert returncode == code
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


@pytest.mark.parametrize("program", ["predict.py", "lambda_function.py", "stream.py"])
def test_help_of_the_online_entry_points_answers_without_starting_or_reading(program):
    """`--help` prints the usage and exits 0: it starts no server and reads nothing from stdin
    (left open here, so a program that waited on it would time out)."""
    process = subprocess.Popen(
        [sys.executable, program, "--help"],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert out.startswith(f"usage: {program}")


def _record(name: str, message: str, error: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(error), error, None) if error else None
    return logging.LogRecord(name, logging.ERROR, __file__, 1, message, None, exc_info)


@pytest.mark.parametrize(
    ("record", "shown"),
    [
        (
            _record(
                "prefect.task_runs",
                "Task run failed with exception: InputNotFoundError('x') - Retries are exhausted",
            ),
            False,
        ),
        (
            _record(
                "prefect.task_runs",
                "Finished in state Failed('Task run encountered an exception QualityError: x')",
            ),
            False,
        ),
        (
            _record(
                "prefect.flow_runs",
                "Encountered exception during execution: %r",
                InputNotFoundError("x"),
            ),
            False,
        ),
        (
            _record(
                "prefect.flow_runs",
                "Finished in state Failed('Flow run encountered an exception: MonthBusyError: x')",
            ),
            False,
        ),
        (
            _record(
                "prefect.task_runs",
                "Task run failed with exception: OutputWriteError('x') - Retry 1/2 will start",
            ),
            False,
        ),
        # a bug is no known failure: its lines stay
        (
            _record(
                "prefect.flow_runs", "Encountered exception during execution: %r", KeyError("x")
            ),
            True,
        ),
        (_record("prefect.flow_runs", "Finished in state Failed('... KeyError: x')"), True),
        # nor are other loggers' lines about it filtered
        (_record("ride_duration.batch.month", "InputNotFoundError seen"), True),
        (_record("prefect.flow_runs", "read 83827 rows, dropped 3455"), True),
    ],
)
def test_prefect_s_console_lines_about_a_known_failure_are_dropped(record, shown):
    assert cli._KnownFailureOnce().filter(record) is shown


@pytest.mark.parametrize(("debug", "filters"), [(False, 2), (True, 0)])
def test_quiet_filters_a_handler_made_late_once(debug, filters):
    """Prefect makes its handlers when a command imports it, after `cli.run` began: `quiet`
    again filters them, and a handler filtered already is not filtered twice."""
    handler = logging.StreamHandler()
    logger = logging.getLogger("prefect.flow_runs")
    logger.addHandler(handler)
    try:
        cli.quiet(debug)
        cli.quiet(debug)
        kinds = [type(f) for f in handler.filters]
        assert kinds == [cli._NoTraceback, cli._KnownFailureOnce][:filters]
    finally:
        logger.removeHandler(handler)
