"""Score one month of NYC TLC trips with the ride-duration model: `python score.py green 2021 3`.

The Prefect flow `ride-duration-prediction` reads the month's trip file, gives every ride a
UUID, predicts its duration with a model from MLflow and writes the predictions as parquet to
`{OUTPUT_ROOT}/taxi_type=.../year=.../month=.../{model run id}.parquet`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Annotated
from zoneinfo import ZoneInfo

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from pydantic import Field

from ride_duration import cli, storage
from ride_duration import month as m
from ride_duration.months import FIRST_YEAR, Month, scheduled_month
from ride_duration.settings import Settings, format_template
from ride_duration.tasks import resolve_model_task, score_month_task
from ride_duration.trips import TAXI_TYPES, TaxiType

LAST_YEAR = 2100
# The form's descriptions come from the docstrings' Args (Prefect drops Annotated descriptions);
# the bounds here become the form's number limits and the server's parameter schema.
Year = Annotated[int, Field(ge=FIRST_YEAR, le=LAST_YEAR)]
MonthNumber = Annotated[int, Field(ge=1, le=12)]


def run_name() -> str:
    """Flow run names like "score-green-2021-03"."""
    parameters = flow_run.parameters
    return month_run_name(parameters["taxi_type"], Month(parameters["year"], parameters["month"]))


def month_run_name(taxi_type: str, month: Month) -> str:
    """The name of the run that scores one taxi type's month (backfills look runs up by it)."""
    return f"score-{taxi_type}-{month}"


@flow(name="ride-duration-prediction", flow_run_name=run_name)
def score(
    taxi_type: TaxiType,
    year: Year,
    month: MonthNumber,
    model_uri: str = "",
    input_uri_template: str = "",
    output_root: str = "",
) -> dict:
    """Predict the duration of every ride of one month and write the predictions as parquet.

    Args:
        taxi_type: Which TLC trip records to score: yellow, green, fhv or fhvhv.
        year: Year of the trips, 2009 to 2100.
        month: Month of the trips, 1 to 12; that month itself is scored.
        model_uri: An MLflow model URI (models:/NAME@ALIAS, models:/NAME/VERSION,
            runs:/RUN_ID/model) or an artifact location. Empty: MODEL_URI, else
            runs:/$RUN_ID/model, else models:/ride-duration@production.
        input_uri_template: Where trip files are, with {taxi_type}, {year} and
            {month} placeholders. Empty: INPUT_URI_TEMPLATE, else the TLC's public files.
        output_root: Where predictions go: OUTPUT_ROOT or a folder inside it.
            Empty: OUTPUT_ROOT (default "output").
    """
    logger = get_run_logger()
    settings = Settings.from_env()
    settings.configure_mlflow()
    template = input_uri_template or settings.input_uri_template
    storage.check_no_credentials(template, "input_uri_template")
    input_uri = format_template(template, taxi_type, year, month)
    root = settings.output_root_for(output_root)

    model = resolve_model_task(
        model_uri or settings.default_model_uri, settings.trusted_model_prefixes
    )
    logger.info(
        "model %s resolved to %s (run %s)",
        storage.display_uri(model.uri),
        model.label,
        model.run_id,
    )
    output_uri = m.output_uri(root, taxi_type, year, month, model)
    logger.info(
        "scoring %s %04d-%02d from %s", taxi_type, year, month, storage.display_uri(input_uri)
    )

    result = score_month_task(taxi_type, year, month, input_uri, output_uri, model, settings)
    dropped = ", ".join(f"{reason}={count}" for reason, count in result.rows_dropped.items())
    logger.info(
        "read %d rows, dropped %d (%s), scored %d with %s; wrote %s and %s",
        result.rows_read,
        sum(result.rows_dropped.values()),
        dropped,
        result.rows_scored,
        model.label,
        result.output_uri,
        result.manifest_uri,
    )
    logger.info(
        "quality: %s",
        ", ".join(f"{name}={value}" for name, value in result.metrics.items()),
    )
    create_markdown_artifact(
        markdown=m.markdown_report(result),
        key=f"score-{taxi_type}-{year:04d}-{month:02d}",
        description=f"Ride-duration predictions for {result.label}",
    )
    return m.summary(result)


def scheduled_run_name() -> str:
    """Names like "scheduled-green-2026-08": the month this scheduled run scores."""
    return f"scheduled-{flow_run.parameters['taxi_type']}-{_scheduled_month(Settings.from_env())}"


@flow(name="ride-duration-prediction-scheduled", flow_run_name=scheduled_run_name)
def score_scheduled_month(taxi_type: TaxiType) -> dict:
    """Score the month a monthly schedule stands for, as a run of ride-duration-prediction.

    The month is the one of the run's scheduled start, in SCHEDULE_TIMEZONE, minus
    PUBLICATION_LAG_MONTHS: the latest month the TLC has surely published by then.

    Args:
        taxi_type: Which TLC trip records to score: yellow, green, fhv or fhvhv.
    """
    settings = Settings.from_env()
    chosen = _scheduled_month(settings)
    _explain_derived_month(chosen, settings, get_run_logger())
    return score(taxi_type=taxi_type, year=chosen.year, month=chosen.month)


def _scheduled_month(settings: Settings) -> Month:
    return scheduled_month(
        flow_run.scheduled_start_time, settings.schedule_timezone, settings.publication_lag_months
    )


def _explain_derived_month(chosen: Month, settings: Settings, logger: logging.Logger) -> None:
    """Say which month a scheduled run scores, and why (never a silent "now")."""
    start = flow_run.scheduled_start_time.astimezone(ZoneInfo(settings.schedule_timezone))
    reason = (
        f"scoring {chosen}, the month of this run's scheduled start "
        f"({start:%Y-%m-%d %H:%M} {settings.schedule_timezone}) minus a publication lag of "
        f"{settings.publication_lag_months} months (PUBLICATION_LAG_MONTHS)"
    )
    if _auto_scheduled():
        logger.info(reason)
    else:
        logger.warning(
            "%s; this run was started by hand, so its scheduled start is now: to score "
            "another month, run the ride-duration-prediction flow (deployment monthly) with "
            "a year and month",
            reason,
        )


def _auto_scheduled() -> bool:
    """Whether this flow run was created by its deployment's schedule."""
    if not flow_run.id:
        return False
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return bool(client.read_flow_run(flow_run.id).auto_scheduled)


def main(argv: list[str] | None = None) -> int:
    """The command line: `python score.py TAXI_TYPE YEAR MONTH [options]`."""
    parser = argparse.ArgumentParser(
        prog="score.py", description="Predict ride durations for one month of TLC trips."
    )
    parser.add_argument("taxi_type", choices=TAXI_TYPES, help="which TLC trip records")
    parser.add_argument("year", type=cli.bounded_int(FIRST_YEAR, LAST_YEAR), help="e.g. 2021")
    parser.add_argument("month", type=cli.bounded_int(1, 12), help="1 to 12; that month is scored")
    parser.add_argument("--model-uri", default="", help="MLflow model URI or artifact location")
    parser.add_argument("--input-uri-template", default="", help="overrides INPUT_URI_TEMPLATE")
    parser.add_argument("--output-root", default="", help="overrides OUTPUT_ROOT")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)

    def run() -> None:
        with cli.prefect_api():
            score(
                taxi_type=args.taxi_type,
                year=args.year,
                month=args.month,
                model_uri=args.model_uri,
                input_uri_template=args.input_uri_template,
                output_root=args.output_root,
            )

    return cli.run(run, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
