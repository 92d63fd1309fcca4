"""RESULTS.md is written by several benchmarks: each owns one marked section of it."""

from __future__ import annotations

from pathlib import Path


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
