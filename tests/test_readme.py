"""The README keeps its promises: every command block is run as written, every setting listed."""

from __future__ import annotations

import re
import shlex

import pytest

from ride_duration import settings
from tests.conftest import REPO
from tests.integration.test_readme import PLANS
from tests.readme import bare, sections

SECTIONS = sections()


def test_every_section_with_commands_has_a_plan_and_every_plan_a_section():
    assert [s.title for s in SECTIONS] == [t for t in PLANS if t in {s.title for s in SECTIONS}]
    assert set(PLANS) == {s.title for s in SECTIONS}


@pytest.mark.parametrize("section", SECTIONS, ids=lambda s: s.title)
def test_a_plan_names_only_commands_of_its_section(section):
    plan = PLANS[section.title]
    commands = {bare(c) for c in section.commands}
    assert set(plan.skip) <= commands, set(plan.skip) - commands
    assert set(plan.expect) <= commands, set(plan.expect) - commands
    assert all(reason.strip() for reason in plan.skip.values())


@pytest.mark.parametrize("section", SECTIONS, ids=lambda s: s.title)
def test_commands_are_shell_words(section):
    """Each command parses as shell words: an unbalanced quote would break the user's shell."""
    for command in section.commands:
        assert shlex.split(command, comments=True)


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
    assert [(s.title, s.commands) for s in sections(text)] == found


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


# --- the configuration table and the settings ---------------------------------------------------

# Documented variables that other tools read, not the settings object.
READ_ELSEWHERE = {
    "AWS_ENDPOINT_URL": "s3fs, botocore and boto3 read it",
    "AWS_ACCESS_KEY_ID": "the AWS credential chain",
    "AWS_SECRET_ACCESS_KEY": "the AWS credential chain",
    "AWS_PROFILE": "the AWS credential chain",
    "TLC_DATA_DIR": "the Makefile and the tests read it",
}
# Defaults the table words for people rather than as values.
WORDED_DEFAULTS = {"CODE_VERSION": "the git commit", "WEB_WORKERS": "one per core"}


def configuration_table() -> dict[str, str]:
    """The README's configuration table: each variable and its default, as written."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    table: dict[str, str] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[0]):
                table[name] = cells[1]
    return table


def documented(default: object) -> str:
    """How the table writes a settings default."""
    if default is None:
        return "unset"
    if isinstance(default, tuple):
        return "`" + ",".join(default) + "`"
    return f"`{default}`"


TABLE = configuration_table()
VARIABLES = settings.variables()


@pytest.mark.parametrize("name", sorted(VARIABLES), ids=str)
def test_every_variable_the_settings_read_is_documented_with_its_default(name):
    assert name in TABLE, f"{name} is read by Settings but missing from the README's table"
    assert TABLE[name] == WORDED_DEFAULTS.get(name, documented(VARIABLES[name].default))


@pytest.mark.parametrize("name", sorted(TABLE), ids=str)
def test_every_documented_variable_is_read(name):
    assert name in VARIABLES or name in READ_ELSEWHERE, f"nothing reads {name}"
