"""The month a scheduled run scores, and the line that says why."""

from __future__ import annotations

import logging
from zoneinfo import ZoneInfo

from prefect.runtime import flow_run

from ride_duration.core.months import Month, scheduled_month
from ride_duration.core.settings import Settings


def scheduled_month_of_run(settings: Settings) -> Month:
    """The month this flow run stands for: its scheduled start, minus the publication lag."""
    return scheduled_month(
        flow_run.scheduled_start_time, settings.schedule_timezone, settings.publication_lag_months
    )


def explain_scheduled_month(
    chosen: Month,
    settings: Settings,
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
) -> None:
    """Say which month a scheduled run scores, and why (never a silent "now")."""
    start = flow_run.scheduled_start_time.astimezone(ZoneInfo(settings.schedule_timezone))
    reason = (
        f"scoring {chosen}, the month of this run's scheduled start "
        f"({start:%Y-%m-%d %H:%M} {settings.schedule_timezone}) minus a publication lag of "
        f"{settings.publication_lag_months} months (PUBLICATION_LAG_MONTHS)"
    )
    if auto_scheduled():
        logger.info(reason)
    else:
        logger.warning(
            "%s; this run was started by hand, so its scheduled start is now: to score "
            "another month, run the ride-duration-prediction flow (deployment monthly) with "
            "a year and month",
            reason,
        )


def auto_scheduled() -> bool:
    """Whether this flow run was created by its deployment's schedule."""
    if not flow_run.id:
        return False
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return bool(client.read_flow_run(flow_run.id).auto_scheduled)
