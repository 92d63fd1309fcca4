"""The monitoring report a flow writes under the output root and links as an artifact.

A score run launched by a deployment (the monthly schedule, a run from the UI, a backfill's
month on a worker) draws the last MONITORING_REPORT_MONTHS months up to its own, to
`{root}/_reports/report-{taxi type}.html` (the latest, replaced by each run); a backfill that
scored months of a taxi type draws its range at its end, to
`report-{taxi type}-{first}-{last}.html` beside it. The run gets a link artifact to the page,
`monitoring-{taxi type}`. A score run by hand (`score.py`) draws none, to stay quick:
`ride-duration-report` draws one on demand. Drawing it never fails a run: its month is
published already. (`_reports/`, not the table's `_monitoring/`: a reader of the table's
folder reads parquet files only.)
"""

from __future__ import annotations

import logging
import os

from prefect.artifacts import create_link_artifact
from prefect.runtime import deployment

from ride_duration.batch.monitoring_report import write_report
from ride_duration.batch.paths import REPORTS_FOLDER
from ride_duration.core import uris
from ride_duration.core.errors import ScoringError
from ride_duration.core.months import Month
from ride_duration.core.settings import Settings
from ride_duration.core.storage import storage_errors


def in_deployment_run() -> bool:
    """Whether this flow run was launched by a deployment (not by hand, nor as a subflow)."""
    return deployment.id is not None


def latest_name(taxi_type: str) -> str:
    """The file name of the report a score run writes: report-green.html."""
    return f"report-{taxi_type}.html"


def link_report(
    root: str,
    taxi_type: str,
    first: Month,
    last: Month,
    name: str,
    settings: Settings,
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
) -> str | None:
    """Write the report of `taxi_type` from `first` to `last` as `name` in the reports' folder
    under `root`, and link it to this run; where it went, or None (said in a
    warning) when it could not be drawn or written."""
    target = uris.join(root, REPORTS_FOLDER, name)
    failures: tuple[type[BaseException], ...] = (ScoringError, *storage_errors())
    try:
        written = write_report(root, taxi_type, first, last, None, target, settings.limits)
    except failures as error:
        logger.warning("no monitoring report: %s", error)
        return None
    link = target if "://" in target else "file://" + os.path.abspath(target)
    create_link_artifact(
        link=link,
        link_text=f"monitoring report, {taxi_type} {first} to {last}",
        key=f"monitoring-{taxi_type}",
        description=f"Error and drift of {taxi_type}'s months {first} to {last}, as one page",
    )
    logger.info("monitoring report: %s", written)
    return written
