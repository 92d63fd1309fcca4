"""Move predictions of earlier versions into today's layout: `python -m ride_duration.migrate`.

Before, every model version's set of a month sat side by side in its folder, and readers of
the root read them all. This keeps each verified set under `_versions/`, makes the most
recently published one the month's current set, and removes the old files
(`ride_duration.batch.migration`). Run it once, while nothing scores under the root.
"""

from __future__ import annotations

import argparse

from ride_duration.core import cli


def main(argv: list[str] | None = None, prog: str = "ride-duration-migrate") -> int:
    """The command line: `ride-duration-migrate [OUTPUT_ROOT]`."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Move predictions written by earlier versions into the current layout.",
    )
    parser.add_argument(
        "root", nargs="?", default="", help="the output root (default: OUTPUT_ROOT)"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)

    def run() -> None:
        from ride_duration.core.settings import Settings

        with cli.role("batch"):
            from ride_duration.batch.migration import migrate

        settings = Settings.from_env()
        migrate(args.root or settings.output_root, print, settings.lock_stale_seconds)

    return cli.run(run, debug=args.debug)


def command() -> None:
    """The console script `ride-duration-migrate`."""
    cli.exit(main())


if __name__ == "__main__":
    cli.exit(main(prog="python -m ride_duration.migrate"))
