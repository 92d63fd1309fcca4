"""Score the Kinesis stream without Lambda: `python stream.py` (a container, or a laptop).

The command `ride-duration-stream` from a checkout (`ride_duration/stream.py`): it reads
INPUT_STREAM_NAME into the Lambda function's handler until SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import ride_duration.stream
from ride_duration.core import cli


def main(argv: list[str] | None = None) -> int:
    """`python stream.py`: the command `ride-duration-stream` (`ride_duration.stream`)."""
    return ride_duration.stream.main(argv, prog="stream.py")


if __name__ == "__main__":
    cli.exit(main())
