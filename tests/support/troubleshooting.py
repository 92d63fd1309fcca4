"""The error lines docs/troubleshooting.md lists, as patterns a real error line must match.

Each row's backticked lines are patterns: `...` and `<...>` stand for anything (a path, a
value), a number for any number; the rest is the line's own words. The failure tests hand
every error line they see to `assert_documented`, so the table cannot say other words than the
commands.
"""

from __future__ import annotations

import functools
import re

from tests.conftest import REPO

PAGE = REPO / "docs" / "troubleshooting.md"
CODE = re.compile(r"``(.+?)``|`([^`]+)`")
ANYTHING = re.compile(r"\.\.\.|<[^<>]+>")
NUMBER = re.compile(r"\d+(?:\.\d+)?")


@functools.cache
def documented_lines() -> tuple[str, ...]:
    """The lines in the second column of the table under "When something is wrong"."""
    text = PAGE.read_text().split("## When something is wrong", 1)[1].split("\n## ", 1)[0]
    found: list[str] = []
    for row in text.splitlines():
        cells = row.split(" | ")
        if not row.startswith("| ") or len(cells) < 2 or set(cells[1]) <= {"-", "|"}:
            continue
        said = cells[-1].removesuffix(" |")
        found += [a or b for a, b in CODE.findall(said) if (a or b).lstrip("`").strip()]
    return tuple(line for line in found if "error:" in line or line.startswith("make:"))


def pattern(line: str) -> re.Pattern[str]:
    """A documented line as a pattern: its words exact, its numbers any number, `...` and
    `<...>` anything."""
    return re.compile(
        ".*".join(
            NUMBER.pattern.join(re.escape(word) for word in NUMBER.split(part))
            for part in ANYTHING.split(line)
        ),
        re.DOTALL,
    )


def is_documented(error_line: str) -> bool:
    """Whether `error_line` is one of the table's lines."""
    line = error_line.strip()
    return any(pattern(documented).fullmatch(line) for documented in documented_lines())


def assert_documented(error_line: str) -> None:
    """`error_line` matches a line of troubleshooting.md's table."""
    assert is_documented(error_line), (
        f"docs/troubleshooting.md lists no line like {error_line!r}: add a row for it, or "
        "write the row's varying parts as ..."
    )
