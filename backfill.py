"""Re-score a range of past months: `python backfill.py green 2021-01 2021-05`.

The Prefect flow `ride-duration-prediction-backfill` pins the model once (an alias becomes one
version for every month), then runs the score flow once per taxi type and month: in this
process, or, with `--deployment`, as flow runs of the score deployment spread across workers.
A failed month does not stop the others; the flow fails at the end naming them.
"""

from __future__ import annotations

from ride_duration.core import cli, uris

# The command line is checked before the imports below: --help and argument errors answer at
# once, without loading Prefect and the scoring libraries.
if __name__ == "__main__":
    cli.early(cli.backfill_parser(), cli.check_backfill_months)

import asyncio
import time
from typing import Annotated

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.runtime import flow_run
from pydantic import Field

from ride_duration.batch import layout
from ride_duration.batch.planning import (
    Mode,
    MonthOutcome,
    PlannedMonth,
    Progress,
    completed_outcome,
    failure_summary,
    plan,
)
from ride_duration.core.errors import BackfillFailedError, first_line
from ride_duration.core.months import Month, check_past, month_range
from ride_duration.core.settings import Settings
from ride_duration.data.layouts import TaxiType
from ride_duration.orchestration import deployments as orchestration
from ride_duration.orchestration.tasks import prepare_run
from score import score

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
    deployment: str = "",
    input_uri_template: str = "",
    output_root: str = "",
) -> list[dict]:
    """Score every month from `start` to `end` (inclusive) for each taxi type.

    Args:
        taxi_types: One or several TLC trip record types: yellow, green, fhv, fhvhv.
        start: First month, as YYYY-MM (e.g. 2021-01), from 2009-01 on.
        end: Last month, as YYYY-MM, included; a month that is over.
        model_uri: The model, as in the score flow. Empty: MODEL_URI, else runs:/$RUN_ID/model,
            else models:/ride-duration@production. An alias is resolved once, here.
        mode: missing (default) scores months without a complete output for this model
            version; failed re-runs months whose last attempt failed; all re-scores every month.
        max_concurrency: Months in flight at once on workers (with deployment), 1 to 64.
        dry_run: List what would happen to each month, and write nothing.
        deployment: Run each month as a flow run of this score deployment, e.g.
            ride-duration-prediction/monthly, on its workers. Empty: in this process.
        input_uri_template: As in the score flow. Empty: INPUT_URI_TEMPLATE.
        output_root: As in the score flow. Empty: OUTPUT_ROOT.
    """
    logger = get_run_logger()
    months = month_range(Month.parse(start), Month.parse(end))
    check_past(months, Settings.from_env().schedule_timezone)
    taxi_types = list(dict.fromkeys(taxi_types))
    run = prepare_run(model_uri, input_uri_template, output_root)
    settings, model = run.settings, run.model
    logger.info("model %s pinned to %s for every month", model.uri, model.label)
    names = [layout.run_name(t, m) for t in taxi_types for m in months]
    last_states = asyncio.run(orchestration.last_run_states(names)) if mode == "failed" else {}
    planned = plan(
        taxi_types=taxi_types,
        months=months,
        model=model,
        mode=mode,
        input_uri_template=run.input_uri_template,
        output_root=run.output_root,
        last_states=last_states,
        check_inputs=dry_run,
    )
    for month in planned:
        verb = "would score" if dry_run and month.action == "score" else month.action
        logger.info("%s %s: %s (%s)", month.taxi_type, month.month, verb, month.reason)
    if dry_run:
        return [
            {
                "taxi_type": p.taxi_type,
                "month": str(p.month),
                "action": "would score" if p.action == "score" else p.action,
                "reason": p.reason,
            }
            for p in planned
        ]

    to_score = [p for p in planned if p.action == "score"]
    key = "backfill-" + "-".join(taxi_types) + f"-{start}-{end}"
    progress = Progress(len(to_score))
    progress_id = create_progress_artifact(
        progress=progress.percent,
        key=f"{key}-progress",
        description=f"Months of {', '.join(taxi_types)} {start}..{end} finished",
    )

    def finished(outcome: MonthOutcome) -> None:
        logger.info(progress.finished(outcome))
        update_progress_artifact(progress_id, progress.percent)

    parameters = {
        "model_uri": model.resolved_uri,
        "input_uri_template": run.input_uri_template,
        "output_root": run.output_root,
    }
    if deployment:
        scored = asyncio.run(
            orchestration.run_on_deployment(
                deployment=deployment,
                planned=to_score,
                parameters=lambda p: {
                    "taxi_type": p.taxi_type,
                    "year": p.month.year,
                    "month": p.month.month,
                    **parameters,
                },
                idempotency_key=lambda p: f"{flow_run.id}/{p.taxi_type}/{p.month}/{model.label}",
                max_concurrency=max_concurrency,
                month_timeout_seconds=settings.backfill_month_timeout_seconds,
                on_done=finished,
            )
        )
    else:
        scored = []
        for p in to_score:
            scored.append(_score_here(p, parameters))
            finished(scored[-1])
    by_month = {(o.taxi_type, o.month): o for o in scored}
    outcomes = [by_month.get((p.taxi_type, str(p.month))) or _skipped(p) for p in planned]

    create_table_artifact(
        table=[o.as_row() for o in outcomes],
        key=key,
        description=f"Backfill {', '.join(taxi_types)} {start}..{end} with {model.label}",
    )
    completed = sum(o.state == "completed" for o in outcomes)
    skipped = sum(o.state == "skipped" for o in outcomes)
    logger.info(
        "%d months scored, %d skipped, %d failed",
        completed,
        skipped,
        len(outcomes) - completed - skipped,
    )
    if completed + skipped < len(outcomes):
        raise BackfillFailedError(failure_summary(outcomes))
    return [o.as_row() for o in outcomes]


def _score_here(month: PlannedMonth, parameters: dict) -> MonthOutcome:
    """Score one month as a subflow of this process."""
    started = time.monotonic()
    state = score(
        taxi_type=month.taxi_type,
        year=month.month.year,
        month=month.month.month,
        return_state=True,
        **parameters,
    )
    seconds = time.monotonic() - started
    if state.is_completed():
        return completed_outcome(month, seconds)
    error = state.result(raise_on_failure=False)
    message = first_line(error) if str(error).strip() else state.name
    return MonthOutcome(
        month=str(month.month),
        taxi_type=month.taxi_type,
        state=state.type.value.lower(),
        seconds=round(seconds, 1),
        output=uris.display_uri(month.output_uri),
        error=message,
    )


def _skipped(month: PlannedMonth) -> MonthOutcome:
    return MonthOutcome(
        month=str(month.month),
        taxi_type=month.taxi_type,
        state="skipped",
        output=uris.display_uri(month.output_uri),
        error=month.reason,
    )


def main(argv: list[str] | None = None) -> int:
    """The command line: `python backfill.py TAXI_TYPES START END [options]`."""
    args = cli.backfill_parser().parse_args(argv)

    def run() -> None:
        cli.check_backfill_months(args)  # a typo fails in a blink, before Prefect starts
        with cli.prefect_api():
            rows = backfill(
                taxi_types=args.taxi_types,
                start=args.start,
                end=args.end,
                model_uri=args.model_uri,
                mode=args.mode,
                max_concurrency=args.max_concurrency,
                dry_run=args.dry_run,
                deployment=args.deployment,
                input_uri_template=args.input_uri_template,
                output_root=args.output_root,
            )
        for row in rows:
            print("  ".join(f"{value}" for value in row.values() if value not in (None, "")))

    return cli.run(run, debug=args.debug)


if __name__ == "__main__":
    cli.exit(main())
