"""`python -m ride_duration.compile MODEL_URI`: compile a logged forest (`model.compiling`)."""

from ride_duration.core import cli
from ride_duration.model.compiling import main

if __name__ == "__main__":
    cli.exit(main())
