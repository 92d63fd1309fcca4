"""Re-score a range of past months: `python backfill.py green 2021-01 2021-05`.

The command `ride-duration-backfill` from a checkout: `ride_duration/backfill.py` runs the flow
`ride-duration-prediction-backfill` (`ride_duration/orchestration/flows.py`), in this process or
on a deployment's workers.
"""

from __future__ import annotations

import ride_duration.backfill
from ride_duration.core import cli


def main(argv: list[str] | None = None) -> int:
    """`python backfill.py`: the command `ride-duration-backfill` (`ride_duration.backfill`)."""
    return ride_duration.backfill.main(argv, prog="backfill.py")


if __name__ == "__main__":
    cli.exit(main())
