"""Score one month of TLC trips: `ride-duration-score green 2021 3` (or `python score.py ...`).

Runs the flow `ride-duration-prediction` (`ride_duration.orchestration.flows.score`) against
the Prefect API of PREFECT_API_URL, else a local server it starts, and prints one line once the
month is published.
"""

from __future__ import annotations

import argparse

from ride_duration.core import cli
from ride_duration.core.months import FIRST_YEAR, LAST_YEAR
from ride_duration.data.taxi_types import TAXI_TYPES

# After SIGINT or SIGTERM, Prefect marks the run crashed in well under a second; past this, the
# process ends regardless.
SIGNAL_GRACE_SECONDS = 10


def parser(prog: str = "ride-duration-score") -> argparse.ArgumentParser:
    """The arguments of `ride-duration-score TAXI_TYPE YEAR MONTH [options]`."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Predict ride durations for one month of TLC trips."
    )
    parser.add_argument("taxi_type", choices=TAXI_TYPES, help="which TLC trip records")
    parser.add_argument("year", type=cli.bounded_int(FIRST_YEAR, LAST_YEAR), help="e.g. 2021")
    parser.add_argument("month", type=cli.bounded_int(1, 12), help="1 to 12; that month is scored")
    cli.add_options(parser)
    return parser


def main(argv: list[str] | None = None, prog: str = "ride-duration-score") -> int:
    """The command line; the arguments are checked before Prefect and the scoring libraries
    are imported, so that --help and argument errors answer at once."""
    args = parser(prog).parse_args(argv)

    def run() -> None:
        with cli.role("batch"):
            from ride_duration.orchestration import report
            from ride_duration.orchestration.flows import score
            from ride_duration.orchestration.server import prefect_api
        cli.quiet(args.debug)  # Prefect's handlers exist now

        with prefect_api():
            summary = score(
                taxi_type=args.taxi_type,
                year=args.year,
                month=args.month,
                model_uri=args.model_uri,
                input_uri_template=args.input_uri_template,
                output_root=args.output_root,
            )
        print(report.closing_line(summary))

    cli.end_within(SIGNAL_GRACE_SECONDS)
    return cli.run(run, debug=args.debug)


def command() -> None:
    """The console script `ride-duration-score`."""
    cli.exit(main())
