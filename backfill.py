"""Re-score a range of past months: `python backfill.py green 2021-01 2021-05`.

The Prefect flow `ride-duration-prediction-backfill` pins the model once (an alias becomes one
version for every month), then runs the score flow once per taxi type and month: in this
process, or, with `--deployment`, as flow runs of the score deployment spread across workers.
A failed month does not stop the others; the flow fails at the end naming them.
"""

from __future__ import annotations

import argparse

from ride_duration.core import cli


def parser() -> argparse.ArgumentParser:
    """The arguments of `python backfill.py TAXI_TYPES START END [options]`."""
    from ride_duration.data.layouts import TAXI_TYPES

    parser = argparse.ArgumentParser(
        prog="backfill.py", description="Re-score a range of past months of TLC trips."
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
    from ride_duration.core.months import Month, check_past, month_range
    from ride_duration.core.settings import Settings

    months = month_range(Month.parse(arguments.start), Month.parse(arguments.end))
    check_past(months, Settings.from_env().schedule_timezone)


# The command line is checked before the imports below: --help and argument errors answer at
# once, without loading Prefect and the scoring libraries.
if __name__ == "__main__":
    cli.early(parser(), check_months)

from typing import Annotated, Any

from prefect import flow, get_run_logger
from pydantic import Field

from ride_duration.batch.planning import Mode
from ride_duration.core.errors import BackfillFailedError
from ride_duration.core.months import Month, check_past, month_range
from ride_duration.core.settings import Settings
from ride_duration.data.layouts import TaxiType
from ride_duration.orchestration import backfill_steps, report
from ride_duration.orchestration.server import prefect_api
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
        return backfill_steps.dry_run_rows(planned)
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
    return backfill_steps.finish(backfill, planned, scored)


def main(argv: list[str] | None = None) -> int:
    """The command line: `python backfill.py TAXI_TYPES START END [options]`."""
    args = parser().parse_args(argv)

    def run() -> None:
        check_months(args)  # a typo fails in a blink, before Prefect starts
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


if __name__ == "__main__":
    cli.exit(main())
