"""A run that publishes one month's set and is killed (SIGKILL) at a chosen write: the child
process of the tests that kill a publish just before and just after each of its writes.

    python -m tests.support.publish_child ROOT VERSION ROWS SEED [before|after|renaming] [WRITE]

WRITE counts the publish's writes to the store, from 1, in order: the lock's creation, the
version file's commit, the switch of the current set, the manifest's copy, the lock's removal.
"renaming" kills it inside the write, once its temporary file is made, as it renames it into
place (local writes 2 to 4: the staged set, the switch's link, the manifest's copy).
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Callable

from ride_duration.core import storage, writes
from ride_duration.core.months import Month
from tests.support.outputs import model, publish

WRITES = 5


def killing(when: str, at: int) -> Callable[[Callable], Callable]:
    """Wrap a write so that the process kills itself just `when` the write numbered `at`."""
    count = [0]

    replace = os.replace

    def renaming(source: str, target: str) -> None:
        if when == "renaming" and count[0] == at:
            os.kill(os.getpid(), signal.SIGKILL)
        replace(source, target)

    os.replace = renaming

    def wrap(write: Callable) -> Callable:
        @functools.wraps(write)
        def counted(*args: object, **kwargs: object) -> object:
            count[0] += 1
            if when == "before" and count[0] == at:
                os.kill(os.getpid(), signal.SIGKILL)
            result = write(*args, **kwargs)
            if when == "after" and count[0] == at:
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        return counted

    return wrap


def main(argv: list[str]) -> None:
    root, version, rows, seed = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    if len(argv) > 4:
        wrap = killing(argv[4], int(argv[5]))
        writes.create_exclusive = wrap(writes.create_exclusive)
        writes.AtomicParquetWriter.commit = wrap(writes.AtomicParquetWriter.commit)
        writes.publish_copy = wrap(writes.publish_copy)
        writes.write_text = wrap(writes.write_text)
        storage.remove = wrap(storage.remove)
    publish(root, "green", Month(2021, 3), model(version), rows=rows, seed=seed)


if __name__ == "__main__":
    main(sys.argv[1:])
