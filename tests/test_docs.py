"""The documentation keeps its promises: every command block is run, every generated or mirrored
table matches what it mirrors, every link leads somewhere."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from datetime import UTC, datetime

import numpy as np
import pytest
import yaml

from ride_duration.batch import manifest
from ride_duration.batch.result import MonthResult
from ride_duration.core import settings
from ride_duration.core.months import Month
from ride_duration.model.resolve import ModelRef
from ride_duration.monitoring import drift
from ride_duration.monitoring.profile import NUMERIC_COLUMNS, ZONE_COLUMNS, Profile
from tests.conftest import REPO
from tests.support.doc_plans import PLANS
from tests.support.docs import (
    all_sections,
    bare,
    conforms,
    curl_request,
    example_answers,
    lambda_recipe,
    pages,
    read,
    section_text,
    sections,
    table,
    untagged_command_blocks,
)

SECTIONS = list(all_sections().values())
PAGES = pages()
GENERATE = REPO / "docs" / "generate.py"


def test_every_section_with_commands_has_a_plan_and_every_plan_a_section():
    assert sorted(PLANS) == sorted(s.key for s in SECTIONS)


def test_the_readme_comes_first_then_the_pages():
    assert next(iter(PLANS)) == "README.md#Quickstart"


@pytest.mark.parametrize("section", SECTIONS, ids=lambda s: s.key)
def test_a_plan_names_only_commands_of_its_section(section):
    plan = PLANS[section.key]
    commands = {bare(c) for c in section.commands}
    assert set(plan.skip) <= commands, set(plan.skip) - commands
    assert set(plan.expect) <= commands, set(plan.expect) - commands
    assert all(reason.strip() for reason in plan.skip.values())
    assert not set(plan.skip) & set(plan.expect)


@pytest.mark.parametrize("section", SECTIONS, ids=lambda s: s.key)
def test_commands_are_shell_words(section):
    """Each command parses as shell words: an unbalanced quote would break the reader's shell."""
    for command in section.commands:
        assert shlex.split(command, comments=True)


@pytest.mark.parametrize("page", PAGES)
def test_every_block_of_commands_is_a_console_block(page):
    """A `$ command` outside a console block would never run in the tests."""
    assert untagged_command_blocks(read(page)) == []


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("## A\n```console\n$ make demo   # comment\n```\n", [("A", ("make demo   # comment",))]),
        ("## A\n```\n$ not console\n```\n## B\n```console\n$ x\n$ y\n```\n", [("B", ("x", "y"))]),
        (
            "## A\n### Sub\n```console\n$ a\n```\n```console\nprinted\n$ b\n```\n",
            [("A", ("a", "b"))],
        ),
        ("## A\nno blocks\n", []),
    ],
)
def test_sections_are_read_from_console_blocks(text, found):
    assert [(s.title, s.commands) for s in sections("PAGE.md", text)] == found


@pytest.mark.parametrize(
    ("text", "untagged"),
    [
        ("```\n$ make demo\n```\n", ["$ make demo\n"]),
        ("```sh\nls\n$ x\n```\n", ["ls\n$ x\n"]),
        ("```console\n$ make demo\n```\n", []),
        ("```\nprinted output\n```\n", []),
    ],
)
def test_untagged_command_blocks_are_found(text, untagged):
    assert untagged_command_blocks(text) == untagged


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("make demo     # creates .venv", "make demo"),
        ("pipenv run python score.py green 2021 3", "pipenv run python score.py green 2021 3"),
        ("export X='a#b'   # why", "export X='a#b'"),
    ],
)
def test_bare_drops_the_trailing_comment(command, expected):
    assert bare(command) == expected


def test_the_readme_is_short():
    assert len(read("README.md").splitlines()) <= 200


@pytest.mark.parametrize("page", PAGES)
def test_every_relative_link_leads_to_a_file_and_section(page):
    for target in re.findall(r"\]\(([^)#\s]+(?:#[^)\s]+)?)\)", read(page)):
        if re.match(r"\w+://", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (REPO / page).parent / path
        assert linked.exists(), f"{page} links to {target}, which does not exist"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", linked.read_text(), re.MULTILINE)
            anchors = {
                re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings
            }
            assert anchor in anchors, f"{page} links to {target}: no such section"


# --- generated and mirrored tables ----------------------------------------------------------------


def generated_part(page: str, name: str) -> str:
    found = re.search(rf"<!-- begin: {name}[^\n]*-->\n(.*?)<!-- end: {name} -->", read(page), re.S)
    assert found, f"{page} has no generated part {name!r}"
    return found.group(1)


def test_the_configuration_table_is_the_settings():
    assert generated_part("docs/configuration.md", "settings table") == settings.reference_table()


def test_every_setting_has_a_meaning():
    for name, field in settings.environment_variables().items():
        assert field.metadata["meaning"].strip(), name


def other_tools_variables() -> dict[str, str]:
    """The variables of the 'Read by other tools' table, and who reads each."""
    found = {}
    for row in table(section_text("docs/configuration.md", "Read by other tools"))[1:]:
        for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row[0]):
            found[name] = row[1]
    return found


def test_variables_read_by_other_tools_are_not_settings():
    assert other_tools_variables()
    assert not set(other_tools_variables()) & set(settings.environment_variables())


# Upper-case names in backticks that are not environment variables.
NOT_VARIABLES = {"O_EXCL", "PU_DO", "TRIM_HORIZON"}


@pytest.mark.parametrize("page", PAGES)
def test_every_variable_a_page_names_is_a_setting_or_documented_as_another_tools(page):
    text = read(page)
    named = set(re.findall(r"\b([A-Z][A-Z0-9]*_[A-Z0-9_]*[A-Z0-9])\b", text))
    known = set(settings.environment_variables()) | set(other_tools_variables()) | NOT_VARIABLES
    unknown = {
        name
        for name in named - known
        if re.search(rf"`[^`\n]*\b{name}\b[^`\n]*`|\${name}\b|\b{name}=", text)
    }
    assert not unknown, f"{page} names variables nothing documents: {sorted(unknown)}"


def sample_manifest() -> dict:
    block = generated_part("docs/batch.md", "sample manifest")
    return json.loads(block.removeprefix("```json\n").removesuffix("```\n"))


def shape(value: object) -> object:
    """The keys of nested objects, the leaves replaced by None."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    return None


def test_the_sample_manifest_has_the_fields_build_writes():
    model = ModelRef("models:/m@a", "models:/m/1", "m", "1", "run")
    result = MonthResult(
        "green",
        Month(2021, 3),
        "in.parquet",
        "out.parquet",
        model,
        rows_dropped={"duration_out_of_range": 1},
        metrics={"rmse": 1.0, "mae": 1.0, "mean_error": 0.0, "unknown_pair_share": 0.0},
        seconds={"read": 0.1, "total": 0.1},
    )
    # Measured against a reference profile of every column, as make demo's model has.
    trips = {column: np.array([1.0, 2.0, 3.0]) for column in NUMERIC_COLUMNS}
    trips |= {column: np.array([1, 2, -1]) for column in ZONE_COLUMNS}
    result.reference = Profile.reference(trips, rows_read=3, rows_dropped=0)
    result.profile = result.reference.same_bins()
    result.profile.add(trips, rows_read=3, rows_dropped=0)
    result.drift = drift.compare(result.reference, result.profile)
    built = manifest.with_file(  # _manifest.json: the manifest, and the file it describes
        manifest.build(
            result,
            input_info={"bytes": 1, "etag": None, "modified": "1"},
            version_uri="out/_versions/run.parquet",
            flow_run_id="f",
            started_at=datetime.now(UTC),
            code_version="git:0",
        ),
        {"bytes": 1, "etag": None, "modified": "1"},
    )
    sample = sample_manifest()
    # rows dropped, metrics and seconds are keyed by data: the sample's own keys may be more
    for key in ("rows_dropped", "metrics", "seconds"):
        assert set(built[key]) <= set(sample[key]), key
        built[key] = sample[key] = None
    assert shape(sample) == shape(built)
    assert sample["model"]["scoring"] == "compiled forest"


# The flow each deployment entrypoint names.
ENTRYPOINT_FLOWS = {
    "ride_duration/orchestration/flows.py:score": "ride-duration-prediction",
    "ride_duration/orchestration/flows.py:score_scheduled_month": (
        "ride-duration-prediction-scheduled"
    ),
    "ride_duration/orchestration/flows.py:backfill": "ride-duration-prediction-backfill",
}


def deployment_names(prefect_file: str) -> set[str]:
    """`FLOW/DEPLOYMENT` of each deployment of a prefect.yaml file."""
    content = yaml.safe_load((REPO / prefect_file).read_text())
    return {f"{ENTRYPOINT_FLOWS[d['entrypoint']]}/{d['name']}" for d in content["deployments"]}


@pytest.mark.parametrize(
    ("prefect_file", "section"),
    [("deployment.yaml", "Deploying with Prefect"), ("deployment-docker.yaml", "Scaling out")],
)
def test_the_deployment_tables_name_the_deployments_of_their_file(prefect_file, section):
    rows = table(section_text("docs/deployments.md", section))[1:]
    documented = {row[0].strip("`") for row in rows if row[0].startswith("`ride-duration")}
    assert documented == deployment_names(prefect_file)


@pytest.mark.parametrize(("entrypoint", "name"), sorted(ENTRYPOINT_FLOWS.items()))
def test_each_entrypoint_is_the_flow_it_names(entrypoint, name):
    """Loaded as a worker loads it: the file by its path, the flow by its function's name."""
    from prefect.flows import load_flow_from_entrypoint

    assert load_flow_from_entrypoint(f"{REPO}/{entrypoint}").name == name


def test_the_lambda_recipe_names_settings_and_says_when_each_is_needed():
    recipe = lambda_recipe()
    assert {name for name, needed in recipe.items() if needed == "always"} == {
        "MLFLOW_TRACKING_URI",
        "PREDICTIONS_STREAM_NAME",
    }
    assert set(recipe) <= set(settings.environment_variables())


def test_the_readmes_performance_figures_are_those_of_the_results():
    figures = re.findall(r"\d[\d,]*\.\d+ (?:s|ms)\b", section_text("README.md", "Performance"))
    results = (REPO / "benchmarks" / "RESULTS.md").read_text()
    assert figures
    for figure in figures:
        number = figure.split()[0]
        assert re.search(rf"(?<![\d.]){re.escape(number)}(?![\d])", results), figure


def test_the_generated_parts_are_up_to_date():
    """`docs/generate.py --check` (what `make docs` would write) finds nothing stale."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, str(GENERATE), "--check", "--output", str(REPO / "no-such-output")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.parametrize(
    ("text", "content", "expected"),
    [
        (
            "a\n<!-- begin: t (x) -->\nold\n<!-- end: t -->\nb",
            "new\n",
            "a\n<!-- begin: t (x) -->\nnew\n<!-- end: t -->\nb",
        ),
        ("<!-- begin: t -->\n<!-- end: t -->\n", "x\n", "<!-- begin: t -->\nx\n<!-- end: t -->\n"),
    ],
)
def test_a_generated_part_is_replaced_between_its_markers(text, content, expected):
    import runpy

    generate = runpy.run_path(str(GENERATE))
    assert generate["replace"](text, "t", content) == expected


def test_make_help_lists_every_target_in_aligned_columns():
    lines = subprocess.run(
        ["make", "-s", "--no-print-directory", "help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    targets = re.findall(r"^([a-z-]+):.*## ", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert [line.split()[1] for line in lines] == targets
    widest = max(len(target) for target in targets)
    assert {line.index(line.split()[2], 7 + len(line.split()[1])) for line in lines} == {
        7 + widest + 2
    }


# --- example answers --------------------------------------------------------------------------


def test_every_example_answer_is_found_with_the_command_that_gets_it():
    examples = example_answers()
    assert [(e.page, e.request[:2]) for e in examples] == [
        ("docs/web.md", ("POST", "/predict")),
        ("docs/web.md", ("POST", "/predict/batch")),
        ("docs/web.md", ("GET", "/ready")),
        ("README.md", ("POST", "/predict")),
        ("docs/stream.md", ("KINESIS", "ride_events")),
    ]
    for example in examples:
        # each page's example is checked against its own command's output (integration/
        # test_docs.py) and, with real TLC files, against the demo model's (test_real_tlc.py)
        section = next(
            s for s in SECTIONS if s.page == example.page and example.command in s.commands
        )
        assert section.key in PLANS
        assert conforms(example.answer, example.answer, exact=True) == [], example.key


@pytest.mark.parametrize(
    ("documented", "actual", "exact", "problems"),
    [
        ({"duration": 18.25, "run_id": "..."}, {"duration": 18.25, "run_id": "abc"}, True, 0),
        ({"duration": 18.25}, {"duration": 9.5}, False, 0),  # shape: two decimals at most
        ({"duration": 18.25}, {"duration": 9.5}, True, 1),  # exact: the documented value
        ({"duration": 18.25}, {"duration": 18.2465}, False, 1),  # more than two decimals
        ({"duration": 18.25}, {"duration": 18}, False, 1),  # not a float
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}, False, 1),  # keys in the documented order
        ({"a": 1}, {"a": 1, "b": 2}, False, 1),
        ({"v": "ride-duration/1"}, {"v": "ride-duration-tlc/4"}, True, 0),  # any version
        ({"v": "ride-duration/1"}, {"v": "a285aa4a"}, True, 1),  # a run id is no version
        ({"id": "9f3c..."}, {"id": "a285"}, False, 1),
        ({"p": [{"d": 1.5}, {"d": 2.5}]}, {"p": [{"d": 1.5}]}, False, 1),
        ({"s": "ready", "n": None}, {"s": "ready", "n": None}, True, 0),
        ({"s": "ready"}, {"s": "not ready"}, False, 1),
    ],
)
def test_an_answer_conforms_to_the_documented_one(documented, actual, exact, problems):
    assert len(conforms(documented, actual, exact)) == problems


def test_a_curl_command_is_read_as_its_request():
    command = (
        "curl -s -X POST -H 'Content-Type: application/json' -d '{\"rides\": []}' "
        "http://127.0.0.1:9696/predict/batch"
    )
    assert curl_request(command) == ("POST", "/predict/batch", {"rides": []})
    assert curl_request("curl -s http://127.0.0.1:9696/ready") == ("GET", "/ready", None)
