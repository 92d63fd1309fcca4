"""Re-score a range of past months: `ride-duration-backfill green 2021-01 2021-05`.

The same command as `python backfill.py ...`.

Runs the flow `ride-duration-prediction-backfill` (`ride_duration.orchestration.flows.backfill`)
against the Prefect API of PREFECT_API_URL, else a local server it starts, and prints a table
of the months, on failure too.
"""

from __future__ import annotations

import argparse

from ride_duration.core import cli
from ride_duration.core.errors import BackfillFailedError
from ride_duration.core.months import Month, check_past, month_range
from ride_duration.core.settings import Settings
from ride_duration.data.taxi_types import TAXI_TYPES


def parser(prog: str = "ride-duration-backfill") -> argparse.ArgumentParser:
    """The arguments of `ride-duration-backfill TAXI_TYPES START END [options]`."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Re-score a range of past months of TLC trips."
    )
    parser.add_argument(
        "taxi_types",
        type=cli.taxi_types(TAXI_TYPES),
        help="one or several of yellow,green,fhv,fhvhv, comma-separated",
    )
    parser.add_argument("start", type=cli.month_text, help="first month, YYYY-MM")
    parser.add_argument("end", type=cli.month_text, help="last month, YYYY-MM (included)")
    parser.add_argument(
        "--mode",
        choices=["missing", "stale", "failed", "all"],
        default="missing",
        help="which months to score: missing (default: no set from this model version), "
        "stale (the input or the model changed since), failed (the last run failed or died), "
        "all",
    )
    parser.add_argument("--dry-run", action="store_true", help="list what would happen, and why")
    parser.add_argument(
        "--status", action="store_true", help="show the state of every month, and score nothing"
    )
    parser.add_argument("--max-concurrency", type=cli.bounded_int(1, 64), default=4)
    parser.add_argument("--deployment", default="", help="run months on its workers")
    cli.add_options(parser)
    return parser


def check_months(arguments: argparse.Namespace) -> None:
    """The flow's own month checks (from 2009, over, in order), before Prefect starts."""
    months = month_range(Month.parse(arguments.start), Month.parse(arguments.end))
    check_past(months, Settings.from_env().schedule_timezone)


def main(argv: list[str] | None = None, prog: str = "ride-duration-backfill") -> int:
    """The command line; the arguments and months are checked before Prefect and the scoring
    libraries are imported, so that --help and a typo answer at once."""
    args = parser(prog).parse_args(argv)

    def run() -> None:
        check_months(args)
        with cli.role("batch"):
            from ride_duration.orchestration import report
            from ride_duration.orchestration.flows import backfill
            from ride_duration.orchestration.server import prefect_api
        cli.quiet(args.debug)  # Prefect's handlers exist now

        with prefect_api():
            state = backfill(
                taxi_types=args.taxi_types,
                start=args.start,
                end=args.end,
                model_uri=args.model_uri,
                mode=args.mode,
                max_concurrency=args.max_concurrency,
                dry_run=args.dry_run,
                status=args.status,
                deployment=args.deployment,
                input_uri_template=args.input_uri_template,
                output_root=args.output_root,
                return_state=True,
            )
        outcome = state.result(raise_on_failure=False)
        rows = outcome.rows if isinstance(outcome, BackfillFailedError) else outcome
        if isinstance(rows, list):  # the table ends the output, on failure too
            columns = report.STATUS_COLUMNS if args.status else report.BACKFILL_COLUMNS
            print(report.text_table(rows, columns), flush=True)
        if isinstance(outcome, BaseException):
            raise outcome

    return cli.run(run, debug=args.debug)


def command() -> None:
    """The console script `ride-duration-backfill`."""
    cli.exit(main())
