"""Add a reference profile to a registered model: `ride-duration-profile models:/NAME/3`.

For a version trained before profiles were taken: its training month's trips and its own
predictions of them are counted into `profile.npz`, logged beside its pickle, so the months
it scores from then on measure their drift (`ride_duration.model.profiling`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ride_duration.core import cli

if TYPE_CHECKING:
    from ride_duration.core.settings import Settings


def main(argv: list[str] | None = None, prog: str = "ride-duration-profile") -> int:
    """The command line: `ride-duration-profile MODEL_URI [options]`."""
    return cli.registered_model_tool(
        argv,
        prog,
        description=(
            "Take the reference profile of a registered model from its training month, and log "
            "it beside the model, so the months it scores measure their drift."
        ),
        action=_profile_registered,
    )


def _profile_registered() -> Callable[[str, Settings, str], str]:
    from ride_duration.model.profiling import profile_registered

    return profile_registered


def command() -> None:
    """The console script `ride-duration-profile`."""
    cli.exit(main())


if __name__ == "__main__":
    cli.exit(main(prog="python -m ride_duration.profile"))
