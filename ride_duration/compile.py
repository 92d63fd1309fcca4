"""Compile a registered model: `python -m ride_duration.compile models:/ride-duration/3`.

A random forest or a linear regression: the compiled form is verified bit for bit against
scikit-learn and logged beside the model's pickle (`ride_duration.model.compiling`).
"""

from __future__ import annotations

import argparse

from ride_duration.core import cli


def main(argv: list[str] | None = None, prog: str = "ride-duration-compile") -> int:
    """The command line: `ride-duration-compile MODEL_URI [options]`."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Compile a registered model (a random forest or a linear regression), verify it, "
            "log it beside the model."
        ),
    )
    parser.add_argument("model_uri", help="e.g. models:/ride-duration/3 or models:/NAME@ALIAS")
    args = cli.parse_tool(parser, argv)

    def run() -> None:
        from ride_duration.core.settings import Settings

        with cli.role("batch"):
            from ride_duration.model.compiling import compile_registered

        settings = Settings.from_env()
        settings.configure_mlflow()
        template = args.input_uri_template or settings.input_uri_template
        print(compile_registered(args.model_uri, settings, template))

    return cli.run(run, debug=args.debug)


def command() -> None:
    """The console script `ride-duration-compile`."""
    cli.exit(main())


if __name__ == "__main__":
    cli.exit(main(prog="python -m ride_duration.compile"))
