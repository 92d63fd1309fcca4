"""The README's command blocks, read from README.md so the tests and the docs cannot drift apart.

A command block is a fenced `console` block; each line starting with `$ ` is one command. Blocks
belong to the `##` section above them (a `###` heading inside it is part of the section).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tests.conftest import REPO

FENCE = re.compile(r"^```console\n(.*?)^```", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Section:
    """A `##` section of the README and the commands of its console blocks, in order."""

    title: str
    commands: tuple[str, ...]


def bare(command: str) -> str:
    """The command without its trailing `# comment`."""
    return re.sub(r"\s+#\s.*$", "", command)


def sections(text: str | None = None) -> list[Section]:
    """Every README section that has a console block, in README order."""
    text = (REPO / "README.md").read_text() if text is None else text
    found: list[Section] = []
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    for title, body in zip(parts[1::2], parts[2::2], strict=True):
        commands = [
            line.removeprefix("$ ").strip()
            for block in FENCE.findall(body)
            for line in block.splitlines()
            if line.startswith("$ ")
        ]
        if commands:
            found.append(Section(title.strip(), tuple(commands)))
    return found
