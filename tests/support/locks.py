"""Lock files as runs write them, for the tests of locks and of month states."""

from __future__ import annotations

import os
import socket
import time

from ride_duration.batch.locks import boot_id, pid_namespace, process_start


def holder(**changes: object) -> dict:
    """A lock as a live run on this host writes it, with `changes`."""
    return {
        "owner": "flow-run-1",
        "token": "t",
        "host": socket.gethostname(),
        "boot_id": boot_id(),
        "pid_ns": pid_namespace(),
        "pid": os.getpid(),
        "pid_start": process_start(os.getpid()),
        "since": "2021-04-01T00:00:00+00:00",
        "heartbeat": time.time(),
        "released": False,
        **changes,
    }
