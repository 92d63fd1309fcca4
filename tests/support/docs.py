"""The documentation's command blocks, read from its pages so that tests and docs cannot drift.

A page is a tracked Markdown file (README.md, CONTRIBUTING.md, docs/*.md, ...). A command block
is a fenced `console` block; each of its lines starting with `$ ` is one command. Blocks belong
to the `##` section above them (a `###` heading inside it is part of the section); a section is
known as "PAGE#TITLE", so a block moved to another section or page changes its key.
"""

from __future__ import annotations

import json
import re
import shlex
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


# --- example answers ----------------------------------------------------------------------------

VERSION = re.compile(r"^[\w.-]+/\d+$")  # "ride-duration/1": the run's own registry and version


@dataclass(frozen=True)
class Example:
    """An answer a page shows, and the documented command that gets it: `request` is what the
    command asks, (method, path, body) of an HTTP call or ("KINESIS", stream, record) of a
    ride put on the input stream."""

    page: str
    command: str
    request: tuple[str, str, object]
    answer: dict

    @property
    def key(self) -> str:
        return f"{self.page}: {self.command[:60]}"


def curl_request(command: str) -> tuple[str, str, object]:
    """The method, path and JSON body of a documented `curl` command."""
    words = shlex.split(command)
    body = json.loads(words[words.index("-d") + 1]) if "-d" in words else None
    url = next(word for word in words if word.startswith("http"))
    method = words[words.index("-X") + 1] if "-X" in words else "GET"
    return method, "/" + url.split("/", 3)[3], body


def plain_blocks(text: str) -> list[str]:
    """The fenced blocks of `text` without a language: what the pages show commands print."""
    return [body for language, body in ANY_FENCE.findall(text) if not language]


def _section(page: str, title: str) -> Section:
    return next(s for s in sections(page) if s.title == title)


def example_answers() -> list[Example]:
    """Every example answer of the pages, each with its command: the web service's in
    docs/web.md (one line per `curl` of its section) and in the README (after "The web service
    answers"), and the stream scorer's prediction record at the top of docs/stream.md (what
    the section's reader of the output stream prints, for the ride its `lambda_function.py`
    command sends too)."""
    found = []
    serving = _section("docs/web.md", "Serving online")
    curls = [bare(c) for c in serving.commands if c.startswith("curl ")]
    lines = plain_blocks(section_text("docs/web.md", "Serving online"))[0].splitlines()
    for command, line in zip(curls, lines, strict=True):
        found.append(Example("docs/web.md", command, curl_request(command), json.loads(line)))
    readme = _section("README.md", "One command per mode")
    [predict] = [bare(c) for c in readme.commands if c.startswith("curl ") and "/predict" in c]
    said = re.search(r"The web service answers `(\{.*?\})`", read("README.md"), re.DOTALL)
    assert said, "the README no longer says what the web service answers"
    found.append(Example("README.md", predict, curl_request(predict), json.loads(said.group(1))))
    stream = _section("docs/stream.md", "Scoring a stream")
    [reader] = [bare(c) for c in stream.commands if "get_records" in c]
    [local] = [c for c in stream.commands if "lambda_function.py" in c]
    ride = json.loads(re.search(r"echo '(.*?)'", local).group(1))
    record = plain_blocks(read("docs/stream.md").split("\n## ", 1)[0])[0]
    found.append(
        Example("docs/stream.md", reader, ("KINESIS", "ride_events", ride), json.loads(record))
    )
    return found


def conforms(documented: object, actual: object, exact: bool, at: str = "") -> list[str]:
    """Where `actual` differs from a documented answer: keys (in order), lists, text and
    numbers; a text ending in "..." stands for any text that starts the same, and a model
    version for any. Durations are numbers of at most two decimals, and with `exact` the
    documented ones."""
    if isinstance(documented, dict):
        if not isinstance(actual, dict) or list(actual) != list(documented):
            return [f"{at or 'the answer'}: keys {list(documented)}, got {actual!r}"]
        return [
            problem
            for key, value in documented.items()
            for problem in conforms(value, actual[key], exact, f"{at}.{key}")
        ]
    if isinstance(documented, list):
        if not isinstance(actual, list) or len(actual) != len(documented):
            return [f"{at}: {len(documented)} items, got {actual!r}"]
        return [
            problem
            for index, (value, got) in enumerate(zip(documented, actual, strict=True))
            for problem in conforms(value, got, exact, f"{at}[{index}]")
        ]
    if isinstance(documented, str) and documented.endswith("..."):
        ok = isinstance(actual, str) and actual.startswith(documented.removesuffix("..."))
    elif isinstance(documented, str) and VERSION.match(documented):
        ok = isinstance(actual, str) and bool(VERSION.match(actual))
    elif isinstance(documented, float):
        ok = isinstance(actual, float) and round(actual, 2) == actual
        ok = ok and (actual == documented or not exact)
    else:
        ok = type(actual) is type(documented) and actual == documented
    return [] if ok else [f"{at}: the page says {documented!r}, got {actual!r}"]
