"""The documentation's command blocks, read from its pages so that tests and docs cannot drift.

A page is a tracked Markdown file (README.md, CONTRIBUTING.md, docs/*.md, ...). A command block
is a fenced `console` block; each of its lines starting with `$ ` is one command. Blocks belong
to the `##` section above them (a `###` heading inside it is part of the section); a section is
known as "PAGE#TITLE", so a block moved to another section or page changes its key.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

from tests.conftest import REPO

FENCE = re.compile(r"^```console\n(.*?)^```", re.MULTILINE | re.DOTALL)
ANY_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Section:
    """A `##` section of a page and the commands of its console blocks, in order."""

    page: str
    title: str
    commands: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.page}#{self.title}"


def bare(command: str) -> str:
    """The command without its trailing `# comment`."""
    return re.sub(r"\s+#\s.*$", "", command)


def pages() -> list[str]:
    """Every Markdown file of the repository, as git tracks it (or will: untracked, not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.md"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return sorted(name for name in listed if (REPO / name).is_file())


def read(page: str) -> str:
    return (REPO / page).read_text()


def sections(page: str, text: str | None = None) -> list[Section]:
    """Every section of `page` that has a console block, in page order."""
    text = read(page) if text is None else text
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
            found.append(Section(page, title.strip(), tuple(commands)))
    return found


def all_sections() -> dict[str, Section]:
    """Every section with commands on every page, by key."""
    return {s.key: s for page in pages() for s in sections(page)}


def untagged_command_blocks(text: str) -> list[str]:
    """Fenced blocks that hold `$ ` command lines but are not `console` blocks (never run)."""
    return [
        body
        for language, body in ANY_FENCE.findall(text)
        if language != "console" and any(line.startswith("$ ") for line in body.splitlines())
    ]


def section_text(page: str, title: str) -> str:
    """The Markdown of one `##` section of a page, without its heading."""
    return read(page).split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def table(text: str) -> list[list[str]]:
    """The rows (cells, stripped) of the Markdown tables in `text`, without header rules."""
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("|") and not re.fullmatch(r"\|[\s:|-]+\|", line):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def lambda_recipe() -> dict[str, str]:
    """The Lambda function's documented environment (docs/stream.md): each variable and when
    it is needed ("always", "as a fallback", ...)."""
    rows = table(section_text("docs/stream.md", "As a Lambda function"))
    return {row[0].strip("`"): row[1] for row in rows[1:] if len(row) == 3 and row[0][:1] == "`"}
