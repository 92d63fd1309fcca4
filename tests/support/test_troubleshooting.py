"""docs/troubleshooting.md's lines as patterns: words exact, numbers and `...` varying."""

from __future__ import annotations

import pytest

from tests.support.troubleshooting import documented_lines, is_documented, pattern


@pytest.mark.parametrize(
    ("documented", "line", "matches"),
    [
        ("error: no trip file at ...: may", "error: no trip file at /x/y.parquet: may", True),
        ("error: no trip file at ...: may", "error: no trip file at /x/y.parquet: might", False),
        ("error: month 13 is not", "error: month 0 is not", True),
        ("error: rmse 7.2 > MAX_RMSE 5", "error: rmse 2.852 > MAX_RMSE 0.0001", True),
        ("error: by <flow run> on <host>", "error: by score-x on box-1", True),
        ("error: a (b) [c]", "error: a (b) [c]", True),  # regex characters are words
        ("error: a", "error: a and more", False),  # the whole line, not a prefix
    ],
)
def test_a_documented_line_is_a_pattern(documented, line, matches):
    assert (pattern(documented).fullmatch(line) is not None) is matches


def test_the_table_is_read():
    lines = documented_lines()
    assert len(lines) > 20
    assert all("error:" in line or line.startswith("make:") for line in lines)
    assert is_documented("score.py: error: argument month: 0 is not between 1 and 12")
    assert not is_documented("error: something the table does not say")
