"""Score one month of NYC TLC trips with the ride-duration model: `python score.py green 2021 3`.

The Prefect flow `ride-duration-prediction` reads the month's trip file, gives every ride a
UUID, predicts its duration with a model from MLflow and writes the predictions as parquet to
`{OUTPUT_ROOT}/taxi_type=.../year=.../month=.../predictions.parquet`, the month's current set
(each model version's set is kept under `{OUTPUT_ROOT}/_versions/`).
"""

from __future__ import annotations

import argparse

from ride_duration.core import cli


def parser() -> argparse.ArgumentParser:
    """The arguments of `python score.py TAXI_TYPE YEAR MONTH [options]`."""
    from ride_duration.core.months import FIRST_YEAR, LAST_YEAR
    from ride_duration.data.layouts import TAXI_TYPES

    parser = argparse.ArgumentParser(
        prog="score.py", description="Predict ride durations for one month of TLC trips."
    )
    parser.add_argument("taxi_type", choices=TAXI_TYPES, help="which TLC trip records")
    parser.add_argument("year", type=cli.bounded_int(FIRST_YEAR, LAST_YEAR), help="e.g. 2021")
    parser.add_argument("month", type=cli.bounded_int(1, 12), help="1 to 12; that month is scored")
    cli.add_options(parser)
    return parser


# The command line is checked before the imports below: --help and argument errors answer at
# once, without loading Prefect and the scoring libraries.
if __name__ == "__main__":
    cli.early(parser())

from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from pydantic import Field

from ride_duration.batch import paths
from ride_duration.batch.sink import ParquetFolder
from ride_duration.core import uris
from ride_duration.core.months import FIRST_YEAR, LAST_YEAR, Month
from ride_duration.core.settings import Settings
from ride_duration.data.layouts import TaxiType
from ride_duration.data.sources import trip_file_uri
from ride_duration.orchestration import report, schedule
from ride_duration.orchestration.server import prefect_api
from ride_duration.orchestration.tasks import prepare_run, score_month_task

# After SIGINT or SIGTERM, Prefect marks the run crashed in well under a second; past this, the
# process ends regardless.
SIGNAL_GRACE_SECONDS = 10

# The form's descriptions come from the docstrings' Args (Prefect drops Annotated descriptions);
# the bounds here become the form's number limits and the server's parameter schema.
Year = Annotated[int, Field(ge=FIRST_YEAR, le=LAST_YEAR)]
MonthNumber = Annotated[int, Field(ge=1, le=12)]


def run_name() -> str:
    """Flow run names like "score-green-2021-03"."""
    parameters = flow_run.parameters
    return paths.run_name(parameters["taxi_type"], Month(parameters["year"], parameters["month"]))


@flow(name="ride-duration-prediction", flow_run_name=run_name)
def score(
    taxi_type: TaxiType,
    year: Year,
    month: MonthNumber,
    model_uri: str = "",
    input_uri_template: str = "",
    output_root: str = "",
) -> dict[str, Any]:
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
        output_root: Where predictions go: OUTPUT_ROOT, or a folder inside it whose name
            starts with _ (e.g. output/_experiments), which readers of OUTPUT_ROOT skip.
            Empty: OUTPUT_ROOT (default "output").
    """
    logger = get_run_logger()
    chosen = Month(year, month)
    run = prepare_run(model_uri, input_uri_template, output_root)
    model = run.model
    logger.info(
        "model %s resolved to %s (run %s)", uris.display_uri(model.uri), model.label, model.run_id
    )
    input_uri = trip_file_uri(run.input_uri_template, taxi_type, chosen)
    sink = ParquetFolder(
        paths.MonthOutput(run.output_root, taxi_type, chosen), run.settings.lock_stale_seconds
    )
    logger.info("scoring %s %s from %s", taxi_type, chosen, uris.display_uri(input_uri))
    result = score_month_task(
        taxi_type,
        chosen,
        input_uri,
        sink,
        model,
        run.settings,
        timings={"model_resolve": run.resolve_seconds},
    )
    report.log_result(result, logger)
    create_markdown_artifact(
        markdown=report.markdown_report(result),
        key=paths.run_name(taxi_type, chosen),
        description=f"Ride-duration predictions for {result.label}",
    )
    return report.summary(result)


def scheduled_run_name() -> str:
    """Names like "scheduled-green-2026-08": the month this scheduled run scores."""
    chosen = schedule.scheduled_month_of_run(Settings.from_env())
    return f"scheduled-{flow_run.parameters['taxi_type']}-{chosen}"


@flow(name="ride-duration-prediction-scheduled", flow_run_name=scheduled_run_name)
def score_scheduled_month(taxi_type: TaxiType) -> dict[str, Any]:
    """Score the month a monthly schedule stands for, as a run of ride-duration-prediction.

    The month is the one of the run's scheduled start, in SCHEDULE_TIMEZONE, minus
    PUBLICATION_LAG_MONTHS: the latest month the TLC has surely published by then.

    Args:
        taxi_type: Which TLC trip records to score: yellow, green, fhv or fhvhv.
    """
    settings = Settings.from_env()
    chosen = schedule.scheduled_month_of_run(settings)
    schedule.explain_scheduled_month(chosen, settings, get_run_logger())
    return score(taxi_type=taxi_type, year=chosen.year, month=chosen.month)


def main(argv: list[str] | None = None) -> int:
    """The command line: `python score.py TAXI_TYPE YEAR MONTH [options]`."""
    args = parser().parse_args(argv)

    def run() -> None:
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


if __name__ == "__main__":
    cli.exit(main())
