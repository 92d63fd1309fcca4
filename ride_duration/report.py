"""Draw the monitoring report of a range of months: `ride-duration-report green 2021-01 2021-12`.

One self-contained HTML page (`ride_duration.batch.monitoring_report`): the months that crossed
a limit, each month's RMSE and drift against the limits, the reference's histograms beside one
month's (`--month`), from the monitoring table under OUTPUT_ROOT (or `--output-root`). It
prints where it wrote the page, one line.

The page goes to `--out`, a local path or a URI, by default `report-green-2021-01-2021-12.html`
in the current folder: a report is a file to open, and the current folder is where whoever
asked for it looks next, whether the table is local or on S3. A page in a bucket would have to
be downloaded before it opens, and reading the table needs no right to write beside it; named
by taxi type and range, reports of other ranges are not overwritten.
"""

from __future__ import annotations

import argparse
import os

from ride_duration.core import cli
from ride_duration.data.taxi_types import TAXI_TYPES


def main(argv: list[str] | None = None, prog: str = "ride-duration-report") -> int:
    """The command line: `ride-duration-report TAXI_TYPE FIRST_MONTH LAST_MONTH [options]`."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Draw a taxi type's months from the monitoring table as one HTML page: the months "
            "that crossed a limit, RMSE and drift per month, and the reference's histograms "
            "beside one month's."
        ),
    )
    parser.add_argument("taxi_type", choices=TAXI_TYPES, help="which TLC trip records")
    parser.add_argument("first", type=cli.month_text, help="first month, YYYY-MM")
    parser.add_argument("last", type=cli.month_text, help="last month, YYYY-MM (included)")
    parser.add_argument(
        "--month",
        type=cli.month_text,
        default=None,
        help="the month whose histograms are drawn beside the reference's, YYYY-MM "
        "(default: the last month that has them)",
    )
    parser.add_argument(
        "--output-root", default="", help="the root whose _monitoring/ table is read (OUTPUT_ROOT)"
    )
    parser.add_argument(
        "--out",
        default="",
        help="where to write the page, a local path or a URI "
        "(default: report-TAXI_TYPE-FIRST-LAST.html in the current folder)",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)

    def run() -> None:
        from ride_duration.core.months import Month
        from ride_duration.core.settings import Settings

        first, last = Month.parse(args.first), Month.parse(args.last)
        settings = Settings.from_env()
        with cli.role("batch"):  # pyarrow reads the table, matplotlib draws
            from ride_duration.batch.monitoring_report import default_name, write_report

            print(
                write_report(
                    args.output_root or settings.output_root,
                    args.taxi_type,
                    first,
                    last,
                    Month.parse(args.month) if args.month else None,
                    args.out or os.path.abspath(default_name(args.taxi_type, first, last)),
                    settings.limits,
                )
            )

    return cli.run(run, debug=args.debug)


def command() -> None:
    """The console script `ride-duration-report`."""
    cli.exit(main())


if __name__ == "__main__":
    cli.exit(main(prog="python -m ride_duration.report"))
