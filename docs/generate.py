"""Writes the generated parts of the documentation: `python docs/generate.py` (`make docs`).

- docs/configuration.md: the settings table, from `ride_duration.core.settings`;
- docs/ARCHITECTURE.md: the module table, from each module's first docstring line;
- docs/batch.md: the sample manifest, from green 2021-03's manifest under `output/`
  (what `make demo` wrote); left as it is, with a note, when there is none.

Each part sits between a `<!-- begin: ... -->` and an `<!-- end: ... -->` line.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ride_duration.core.settings import reference_table  # noqa: E402 - after the path is set

CONFIGURATION = REPO / "docs" / "configuration.md"
ARCHITECTURE = REPO / "docs" / "ARCHITECTURE.md"
MODULES_PART = "module table"
BATCH = REPO / "docs" / "batch.md"
SETTINGS_PART = "settings table"
MANIFEST_PART = "sample manifest"


def _span(text: str, name: str) -> re.Match:
    found = re.search(rf"<!-- begin: {name}[^\n]*-->\n(.*?)<!-- end: {name} -->", text, re.DOTALL)
    if not found:
        raise ValueError(f"no part {name!r} (begin and end markers) in the page")
    return found


def part(text: str, name: str) -> str:
    """What lies between the begin and end markers of part `name`."""
    return _span(text, name).group(1)


def replace(text: str, name: str, content: str) -> str:
    """`text` with part `name` holding `content`."""
    found = _span(text, name)
    return text[: found.start(1)] + content + text[found.end(1) :]


def module_table() -> str:
    """Every module of the package and the first line of its docstring, as a Markdown table."""
    rows = ["| module | what it is |", "|---|---|"]
    package = REPO / "ride_duration"
    for path in sorted(package.rglob("*.py")):
        if path.name == "__init__.py":
            continue
        first = path.read_text().split("\n", 1)[0].strip().strip('"').replace("|", "\\|")
        rows.append(f"| `{path.relative_to(package).as_posix()}` | {first} |")
    return "\n".join(rows) + "\n"


def manifest_block(manifest: dict) -> str:
    return "```json\n" + json.dumps(manifest, indent=2, sort_keys=True) + "\n```\n"


def newest_manifest(output: Path) -> Path | None:
    found = output / "taxi_type=green/year=2021/month=03/_manifest.json"
    return found if found.is_file() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="docs/generate.py", description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=REPO / "output", help="make demo's output")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    args = parser.parse_args(argv)

    pages = {
        CONFIGURATION: replace(CONFIGURATION.read_text(), SETTINGS_PART, reference_table()),
        ARCHITECTURE: replace(ARCHITECTURE.read_text(), MODULES_PART, module_table()),
    }
    source = newest_manifest(args.output)
    if source is not None:
        sample = manifest_block(json.loads(source.read_text()))
        pages[BATCH] = replace(BATCH.read_text(), MANIFEST_PART, sample)
    stale = [page for page, text in pages.items() if page.read_text() != text]
    if args.check:
        for page in stale:
            print(f"{page.relative_to(REPO)} is stale: run make docs", file=sys.stderr)
        return 1 if stale else 0
    for page, text in pages.items():
        page.write_text(text)
    print(f"wrote the settings table into {CONFIGURATION.relative_to(REPO)}")
    if source is None:
        print(
            f"no green 2021-03 manifest under {args.output}: run make demo first; "
            f"{BATCH.relative_to(REPO)} keeps its sample"
        )
    else:
        print(f"pasted {source} into {BATCH.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
