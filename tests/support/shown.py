"""What the docs show a command printing, held to what it prints: every line, and no other,
with times, ids, paths and counts aside (they differ from run to run and machine to machine)."""

from __future__ import annotations

import re

# Applied in order: an id's digits are an id, not a count.
VARYING = [
    (re.compile(r"\b\d{2}:\d{2}:\d{2}\.\d{3}\b"), "<time>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"), "<uuid>"),
    (re.compile(r"\b[0-9a-f]{32}\b"), "<id>"),
    (re.compile(r"(?<=-)[0-9a-f]{3}'"), "<id>'"),  # Prefect's task run names: 'score-month-9e9'
    (re.compile(r"(?<![\w.:/])/[^\s)]+"), "<path>"),  # absolute paths, not URLs' or relative ones
    (re.compile(r"(?:(?<![\w-])-)?\d[\d,]*(?:\.\d+)*"), "<n>"),  # a sign, not a date's dash
]


def shape(line: str) -> str:
    """`line` with what varies between runs replaced by placeholders, spaces trimmed."""
    line = line.strip()
    for pattern, placeholder in VARYING:
        line = pattern.sub(placeholder, line)
    return line


def shapes(text: str, start: str = "") -> list[str]:
    """The shapes of `text`'s lines from the first that starts with `start`, sorted (a
    terminal interleaves stdout and stderr in any order)."""
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.startswith(start)), len(lines))
    return sorted(shape(line) for line in lines[first:] if line.strip())


def shown_block(text: str, introduction: str) -> str:
    """The first plain fenced block of `text` after the words `introduction`."""
    after = text[text.index(introduction) :]
    return after.split("\n```\n", 1)[1].split("\n```", 1)[0]
