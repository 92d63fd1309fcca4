"""Compile a registered model: `python -m ride_duration.compile models:/ride-duration/3`.

A random forest or a linear regression: the compiled form is verified bit for bit against
scikit-learn and logged beside the model's pickle (`ride_duration.model.compiling`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ride_duration.core import cli

if TYPE_CHECKING:
    from ride_duration.core.settings import Settings


def main(argv: list[str] | None = None, prog: str = "ride-duration-compile") -> int:
    """The command line: `ride-duration-compile MODEL_URI [options]`."""
    return cli.registered_model_tool(
        argv,
        prog,
        description=(
            "Compile a registered model (a random forest or a linear regression), verify it, "
            "log it beside the model."
        ),
        action=_compile_registered,
    )


def _compile_registered() -> Callable[[str, Settings, str], str]:
    from ride_duration.model.compiling import compile_registered

    return compile_registered


def command() -> None:
    """The console script `ride-duration-compile`."""
    cli.exit(main())


if __name__ == "__main__":
    cli.exit(main(prog="python -m ride_duration.compile"))
