"""Score one month of NYC TLC trips with the ride-duration model: `python score.py green 2021 3`.

The Prefect flow `ride-duration-prediction` reads the month's trip file, gives every ride a
UUID, predicts its duration with a model from MLflow and writes the predictions as parquet to
`{OUTPUT_ROOT}/taxi_type=.../year=.../month=.../{model run id}.parquet`.
"""

from __future__ import annotations

from ride_duration.core import cli, uris

# The command line is checked before the imports below: --help and argument errors answer at
# once, without loading Prefect and the scoring libraries.
if __name__ == "__main__":
    cli.early(cli.score_parser(), cli.no_check)

import logging
from typing import Annotated
from zoneinfo import ZoneInfo

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from pydantic import Field

from ride_duration.batch import layout
from ride_duration.batch.month import MonthResult
from ride_duration.core.months import FIRST_YEAR, LAST_YEAR, Month, scheduled_month
from ride_duration.core.settings import Settings
from ride_duration.data.layouts import TaxiType
from ride_duration.data.sources import trip_file_uri
from ride_duration.orchestration.tasks import prepare_run, score_month_task

# The form's descriptions come from the docstrings' Args (Prefect drops Annotated descriptions);
# the bounds here become the form's number limits and the server's parameter schema.
Year = Annotated[int, Field(ge=FIRST_YEAR, le=LAST_YEAR)]
MonthNumber = Annotated[int, Field(ge=1, le=12)]


def run_name() -> str:
    """Flow run names like "score-green-2021-03"."""
    parameters = flow_run.parameters
    return layout.run_name(parameters["taxi_type"], Month(parameters["year"], parameters["month"]))


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
    chosen = Month(year, month)
    run = prepare_run(model_uri, input_uri_template, output_root)
    model = run.model
    logger.info(
        "model %s resolved to %s (run %s)",
        uris.display_uri(model.uri),
        model.label,
        model.run_id,
    )
    input_uri = trip_file_uri(run.input_uri_template, taxi_type, chosen)
    output = layout.MonthOutput.of(run.output_root, taxi_type, chosen, model)
    logger.info("scoring %s %s from %s", taxi_type, chosen, uris.display_uri(input_uri))

    result = score_month_task(
        taxi_type,
        chosen,
        input_uri,
        output,
        model,
        run.settings,
        timings={"model_resolve": run.resolve_seconds},
    )
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
    logger.info("predicted with %s", result.scoring_path)
    logger.info(
        "quality: %s",
        ", ".join(f"{name}={value}" for name, value in result.metrics.items()),
    )
    create_markdown_artifact(
        markdown=markdown_report(result),
        key=layout.run_name(taxi_type, chosen),
        description=f"Ride-duration predictions for {result.label}",
    )
    return summary(result)


def summary(result: MonthResult) -> dict:
    """The result as plain JSON-ready values (what the flow returns and the artifact shows)."""
    return {
        "taxi_type": result.taxi_type,
        "month": str(result.month),
        "input": result.input_uri,
        "output": result.output_uri,
        "model_uri": uris.display_uri(result.model.uri),
        "model_version": result.model.label,
        "model_run_id": result.model.run_id,
        "scoring": result.scoring_path,
        "rows_read": result.rows_read,
        "rows_dropped": dict(result.rows_dropped),
        "rows_scored": result.rows_scored,
        "metrics": dict(result.metrics),
        "manifest": result.manifest_uri,
        "seconds": dict(result.seconds),
    }


def markdown_report(result: MonthResult) -> str:
    """A short markdown summary of one scored month, for the run's Prefect artifact."""
    lines = [
        f"# Ride durations, {result.label}",
        "",
        "| | |",
        "|---|---|",
        f"| input | `{result.input_uri}` |",
        f"| output | `{result.output_uri}` |",
        f"| model | `{uris.display_uri(result.model.uri)}` = {result.model.label} |",
        f"| predicted with | {result.scoring_path} |",
        f"| rows read | {result.rows_read:,} |",
        *(
            f"| dropped: {reason.replace('_', ' ')} | {count:,} |"
            for reason, count in result.rows_dropped.items()
        ),
        f"| rows scored | {result.rows_scored:,} |",
        *(
            f"| {name.replace('_', ' ')} | {'n/a' if value is None else f'{value:.4f}'} |"
            for name, value in result.metrics.items()
        ),
        f"| manifest | `{result.manifest_uri}` |",
        f"| seconds | {result.seconds.get('total', 0):.1f} |",
    ]
    return "\n".join(lines) + "\n"


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
    args = cli.score_parser().parse_args(argv)

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
    cli.exit(main())
