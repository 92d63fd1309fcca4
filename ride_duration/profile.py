"""Add a reference profile to a registered model: `ride-duration-profile models:/NAME/3`.

For a version trained before profiles were taken: its training month's trips and its own
predictions of them are counted into `profile.npz`, logged beside its pickle, so the months
it scores from then on measure their drift (`ride_duration.model.profiling`).
"""

from __future__ import annotations

import argparse

from ride_duration.core import cli


def main(argv: list[str] | None = None, prog: str = "ride-duration-profile") -> int:
    """The command line: `ride-duration-profile MODEL_URI [options]`."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Take the reference profile of a registered model from its training month, and log "
            "it beside the model, so the months it scores measure their drift."
        ),
    )
    parser.add_argument("model_uri", help="e.g. models:/ride-duration/3 or models:/NAME@ALIAS")
    args = cli.parse_tool(parser, argv)

    def run() -> None:
        from ride_duration.core.settings import Settings

        with cli.role("batch"):
            from ride_duration.model.profiling import profile_registered

        settings = Settings.from_env()
        settings.configure_mlflow()
        template = args.input_uri_template or settings.input_uri_template
        print(profile_registered(args.model_uri, settings, template))

    return cli.run(run, debug=args.debug)


def command() -> None:
    """The console script `ride-duration-profile`."""
    cli.exit(main())


if __name__ == "__main__":
    cli.exit(main(prog="python -m ride_duration.profile"))
