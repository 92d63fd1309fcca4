"""The Prefect flows: score one month, score a schedule's month, backfill a range of months.

`ride-duration-prediction` (`score`) reads a month's trip file, gives every ride a UUID,
predicts its duration with a model from MLflow and writes the predictions as parquet to
`{OUTPUT_ROOT}/taxi_type=.../year=.../month=.../predictions.parquet`, the month's current set
(each model version's set is kept under `{OUTPUT_ROOT}/_versions/`).

`ride-duration-prediction-backfill` (`backfill`) pins the model once (an alias becomes one
version for every month), then runs the score flow once per taxi type and month: in this
process, or, with `deployment`, as flow runs of the score deployment spread across workers. A
failed month does not stop the others; the flow fails at the end naming them.

The commands (`ride_duration.score`, `ride_duration.backfill`) and the deployments
(deployment.yaml) run these.
"""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from pydantic import Field

from ride_duration.batch import paths
from ride_duration.batch.monitoring_report import default_name
from ride_duration.batch.planning import Mode
from ride_duration.batch.sink import ParquetFolder
from ride_duration.core import uris
from ride_duration.core.months import FIRST_YEAR, LAST_YEAR, Month, check_past, month_range
from ride_duration.core.settings import Settings
from ride_duration.data.sources import trip_file_uri
from ride_duration.data.taxi_types import TaxiType
from ride_duration.orchestration import backfill_steps, report, report_link, schedule
from ride_duration.orchestration.tasks import prepare_run, score_month_task

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
    months = run.settings.monitoring_report_months
    if months and report_link.in_deployment_run():
        name = report_link.latest_name(taxi_type)
        first = chosen.shift(1 - months)
        report_link.link_report(
            run.output_root, taxi_type, first, chosen, name, run.settings, logger
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


MonthText = Annotated[str, Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")]
TaxiTypes = Annotated[list[TaxiType], Field(min_length=1)]


@flow(
    name="ride-duration-prediction-backfill",
    flow_run_name="backfill-{start}-{end}",
)
def backfill(
    taxi_types: TaxiTypes,
    start: MonthText,
    end: MonthText,
    model_uri: str = "",
    mode: Mode = "missing",
    max_concurrency: Annotated[int, Field(ge=1, le=64)] = 4,
    dry_run: bool = False,
    status: bool = False,
    deployment: str = "",
    input_uri_template: str = "",
    output_root: str = "",
) -> list[dict[str, Any]]:
    """Score every month from `start` to `end` (inclusive) for each taxi type.

    Args:
        taxi_types: One or several TLC trip record types: yellow, green, fhv, fhvhv.
        start: First month, as YYYY-MM (e.g. 2021-01), from 2009-01 on.
        end: Last month, as YYYY-MM, included; a month that is over.
        model_uri: The model, as in the score flow. Empty: MODEL_URI, else runs:/$RUN_ID/model,
            else models:/ride-duration@production. An alias is resolved once, here.
        mode: missing (default) scores months without a set from this model version; stale
            re-scores months whose input or model changed since their set was made; failed
            re-runs months whose last attempt failed or died; all re-scores every month.
        max_concurrency: Months in flight at once on workers (with deployment), 1 to 64.
        dry_run: List what would happen to each month, and why, and write nothing.
        status: List the state of every month (done, stale, missing, failed, running, not
            published, unscorable), and score nothing.
        deployment: Run each month as a flow run of this score deployment, e.g.
            ride-duration-prediction/monthly, on its workers. Empty: in this process.
        input_uri_template: As in the score flow. Empty: INPUT_URI_TEMPLATE.
        output_root: As in the score flow. Empty: OUTPUT_ROOT.
    """
    months = month_range(Month.parse(start), Month.parse(end))
    check_past(months, Settings.from_env().schedule_timezone)
    taxi_types = list(dict.fromkeys(taxi_types))
    run = prepare_run(model_uri, input_uri_template, output_root)
    get_run_logger().info("model %s pinned to %s for every month", run.model.uri, run.model.label)
    key = "backfill-" + "-".join(taxi_types) + f"-{start}-{end}"
    label = f"{', '.join(taxi_types)} {start}..{end}"
    backfill = backfill_steps.Backfill(
        taxi_types=taxi_types, months=months, run=run, key=key, label=label
    )
    if status:
        return backfill_steps.status_rows(backfill)
    planned = backfill_steps.plan_months(backfill, mode, dry_run)
    if dry_run:
        return backfill_steps.dry_run_rows(planned, run.settings.limits.warn_psi)
    to_score = [p for p in planned if p.action == "score"]
    finished = backfill_steps.progress_reporter(backfill, len(to_score))
    if deployment:
        scored = backfill_steps.score_on_workers(
            backfill,
            to_score,
            deployment=deployment,
            max_concurrency=max_concurrency,
            on_done=finished,
        )
    else:
        scored = backfill_steps.score_here(backfill, to_score, score, finished)
    logger = get_run_logger()
    for taxi_type in dict.fromkeys(p.taxi_type for p in to_score):
        name = default_name(taxi_type, months[0], months[-1])
        report_link.link_report(
            run.output_root, taxi_type, months[0], months[-1], name, run.settings, logger
        )
    return backfill_steps.finish(backfill, planned, scored)
