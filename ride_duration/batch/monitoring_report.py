"""The monitoring report as a file: drawn from the table under a root, and written whole.

A taxi type's rows of the monitoring table (`history.read`) are drawn as one HTML page
(`ride_duration.monitoring.report`) and written atomically, locally or to an object store. The
command `ride-duration-report` calls `write_report`, and so can a flow once it has scored a
month.
"""

from __future__ import annotations

from ride_duration.batch import history
from ride_duration.core import writes
from ride_duration.core.errors import ScoringError
from ride_duration.core.limits import Limits
from ride_duration.core.months import Month, month_range
from ride_duration.core.uris import display_uri
from ride_duration.monitoring import report


class ReportError(ScoringError):
    """A report that cannot be drawn: no month of its range in the table, or a chosen month
    that is not one of its months."""


def default_name(taxi_type: str, first: Month, last: Month) -> str:
    """The report's file name when none is given: report-green-2021-01-2021-12.html."""
    return f"report-{taxi_type}-{first}-{last}.html"


def write_report(
    root: str,
    taxi_type: str,
    first: Month,
    last: Month,
    chosen: Month | None,
    out: str,
    limits: Limits,
) -> str:
    """Draw the report of `taxi_type`'s months `first` to `last` from the monitoring table under
    `root`, with `chosen`'s histograms (None: the last month that has them), and write it to
    `out` (a local path or a URI) atomically; where it was written, safe to show."""
    months = {str(month) for month in month_range(first, last)}
    if chosen is not None and str(chosen) not in months:
        raise ReportError(
            f"the chosen month {chosen} is outside the report's months {first} to {last}: "
            "choose one of them, or none for the last month with histograms"
        )
    rows = [row for row in history.read(root, taxi_type).to_pylist() if row["month"] in months]
    if not rows:
        raise ReportError(
            f"no month of {taxi_type} from {first} to {last} in the monitoring table under "
            f"{display_uri(root)}: score one first (a month scored before the table was kept "
            "has no row), or set --output-root or OUTPUT_ROOT to the root it was scored under"
        )
    scored = [str(row["month"]) for row in rows]
    if chosen is not None and str(chosen) not in scored:
        raise ReportError(
            f"{taxi_type} {chosen} has no row in the monitoring table under "
            f"{display_uri(root)}: choose a month it has ({', '.join(report.month_runs(scored))}), "
            "or none for the last month with histograms"
        )
    page = report.render(
        rows,
        taxi_type=taxi_type,
        limits=limits,
        first=str(first),
        last=str(last),
        chosen_month=str(chosen) if chosen else None,
    )
    writes.write_text(out, page)
    return display_uri(out)
