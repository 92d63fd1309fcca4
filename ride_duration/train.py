"""Train the ride-duration model on one month: `ride-duration-train green 2021 1`.

The same command as `python train.py ...`.

Fits DictVectorizer + RandomForestRegressor (or `--estimator linear`) on the month's trips of
1 to 60 minutes, validates on the following month, logs everything to MLflow, registers the
pipeline as MODEL_NAME and points MODEL_ALIAS at the new version.
"""

from __future__ import annotations

import argparse

from ride_duration.core import cli
from ride_duration.core.months import FIRST_YEAR, Month
from ride_duration.core.settings import Settings
from ride_duration.data.taxi_types import TAXI_TYPES


def main(argv: list[str] | None = None, prog: str = "ride-duration-train") -> int:
    """The command line: `ride-duration-train TAXI_TYPE YEAR MONTH [--estimator linear]`."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Train the ride-duration model on one month, validate it on the next, log "
        "and register it in MLflow (MODEL_NAME), and move the alias MODEL_ALIAS (production) to "
        "the new version: the alias is what score.py, the web service and the stream scorer "
        "load by default.",
    )
    parser.add_argument("taxi_type", choices=TAXI_TYPES, help="which TLC trip records")
    parser.add_argument("year", type=cli.bounded_int(FIRST_YEAR, 2100), help="e.g. 2021")
    parser.add_argument(
        "month", type=cli.bounded_int(1, 12), help="1 to 12: trained on; the next validates"
    )
    parser.add_argument("--estimator", choices=["random-forest", "linear"], default="random-forest")
    args = cli.parse_tool(parser, argv)

    def run() -> None:
        with cli.role("batch"):
            from ride_duration.model.training import train

        settings = Settings.from_env()
        settings.configure_mlflow()
        trained = train(
            taxi_type=args.taxi_type,
            month=Month(args.year, args.month),
            estimator=args.estimator,
            input_uri_template=args.input_uri_template or settings.input_uri_template,
            experiment_name=settings.experiment_name,
            model_name=settings.model_name,
            alias=settings.model_alias,
            batch_size=settings.batch_size,
        )
        print(f"run_id: {trained.run_id}")
        print(
            f"model: models:/{trained.model_name}/{trained.model_version} (alias {trained.alias})"
        )
        print(f"rmse: {trained.rmse:.4f}")
        print(trained.compiled)

    return cli.run(run, debug=args.debug)


def command() -> None:
    """The console script `ride-duration-train`."""
    cli.exit(main())
