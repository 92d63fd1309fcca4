"""RESULTS.md is written by several benchmarks: each owns one marked section of it."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def check_table(checks: Iterable[tuple[str, str, bool]]) -> list[str]:
    """The lines of a benchmark's table of targets: each check's name, value as printed, and
    whether it is met."""
    return [
        "| check | value | met |",
        "|---|---:|---|",
        *(f"| {name} | {value} | {'yes' if met else 'NO'} |" for name, value, met in checks),
    ]


def table(header: list[str], rows: Iterable[Iterable[object]], align: str = "") -> list[str]:
    """The lines of a Markdown table; `align` has an l or r per column (default: the first
    left, the others right)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = "|" + "".join("---|" if a == "l" else "---:|" for a in align)
    return [
        "| " + " | ".join(header) + " |",
        rule,
        *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows),
    ]


def publish(text: str, results: Path | None, name: str) -> None:
    """Print a benchmark's report, and write it as section `name` of `results` when given."""
    print(text)
    if results:
        write_section(results, name, text)


def write_section(path: Path, name: str, text: str) -> None:
    """Replace the section `name` of `path` (between its markers), or add it at the end."""
    begin, end = f"<!-- begin:{name} -->", f"<!-- end:{name} -->"
    block = f"{begin}\n{text.rstrip()}\n{end}"
    previous = path.read_text() if path.exists() else "# Benchmark results\n"
    if begin in previous and end in previous:
        head, rest = previous.split(begin, 1)
        updated = head + block + rest.split(end, 1)[1]
    else:
        updated = previous.rstrip() + "\n\n" + block + "\n"
    path.write_text(updated)
