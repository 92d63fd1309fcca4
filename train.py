"""Train the ride-duration model on one month: `python train.py green 2021 1`.

The command `ride-duration-train` from a checkout (`ride_duration/train.py`): it fits the model
on the month, validates it on the next, and registers it in MLflow.
"""

from __future__ import annotations

import ride_duration.train
from ride_duration.core import cli


def main(argv: list[str] | None = None) -> int:
    """`python train.py`: the command `ride-duration-train` (`ride_duration.train`)."""
    return ride_duration.train.main(argv, prog="train.py")


if __name__ == "__main__":
    cli.exit(main())
