"""The README keeps its promises: every command block is run by a test, as written."""

from __future__ import annotations

import shlex

import pytest

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
