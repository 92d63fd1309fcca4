"""What every failing command owes its user, checked the same way for every entry point."""

from __future__ import annotations

import subprocess
from pathlib import Path


def files_in(folder: Path) -> set[Path]:
    """Every file below `folder` (to tell what a command left behind)."""
    return {path for path in folder.rglob("*") if path.is_file()}


def assert_one_line_failure(
    result: subprocess.CompletedProcess,
    message: str,
    exit_code: int,
    *,
    workdir: Path | None = None,
    files_before: set[Path] | frozenset[Path] = frozenset(),
) -> None:
    """The command failed with `exit_code` and said `message` once, on one stderr line, with no
    traceback; nothing was left in `workdir` beyond `files_before`."""
    output = result.stdout + result.stderr
    assert result.returncode == exit_code, output
    lines = [line for line in result.stderr.splitlines() if message in line]
    assert len(lines) == 1, output
    assert output.count(message) == 1, output
    assert "Traceback" not in output, output
    if workdir is not None:
        assert files_in(workdir) - set(files_before) == set(), output
