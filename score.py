"""Score one month of NYC TLC trips with the ride-duration model: `python score.py green 2021 3`.

The command `ride-duration-score` from a checkout: `ride_duration/score.py` runs the flow
`ride-duration-prediction` (`ride_duration/orchestration/flows.py`), which writes the month's
predictions as parquet under OUTPUT_ROOT.
"""

from __future__ import annotations

import ride_duration.score
from ride_duration.core import cli


def main(argv: list[str] | None = None) -> int:
    """`python score.py`: the command `ride-duration-score` (`ride_duration.score`)."""
    return ride_duration.score.main(argv, prog="score.py")


if __name__ == "__main__":
    cli.exit(main())
