"""gunicorn's settings for the web service: gunicorn reads this file from the folder it starts in.

`gunicorn --bind 0.0.0.0:9696 predict:app` then runs WEB_WORKERS processes (one per core by
default) of WEB_THREADS threads each; flags given on the command line win over these. Every
process keeps its metrics in PROMETHEUS_MULTIPROC_DIR, which a scrape of `/metrics` adds up
(`ride_duration.online.metrics`); SIGTERM drains for WEB_DRAIN_SECONDS before the workers stop
(`ride_duration.online.worker`).
"""

import atexit
import gc
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from ride_duration.core.errors import ConfigurationError
from ride_duration.core.settings import Settings

try:
    _settings = Settings.from_env()
except ConfigurationError as error:
    # gunicorn reports a config file's exception with its traceback; a bad WEB_* variable is
    # the operator's one-line mistake (SystemExit passes through gunicorn's handler).
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)


def _metrics_folder() -> None:
    """Point PROMETHEUS_MULTIPROC_DIR at a fresh folder, before the app imports prometheus_client
    (which reads it once, at import): the operator's, emptied of an earlier run's counts, else a
    temporary one of this master's, removed when it exits."""
    if "prometheus_client" in sys.modules:
        return  # a reload (SIGHUP) reads this file again: the running workers' counts stay
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        try:
            Path(given).mkdir(parents=True, exist_ok=True)
            for stale in Path(given).glob("*.db"):  # prometheus_client's, one per kind and pid
                stale.unlink()
        except OSError as error:  # one line, as for a bad WEB_* variable
            print(
                f"error: PROMETHEUS_MULTIPROC_DIR {given} cannot hold the metrics "
                f"({error.strerror}): point it at a folder the service can write, or unset it "
                "for a temporary one",
                file=sys.stderr,
            )
            sys.exit(2)
        return
    made = tempfile.mkdtemp(prefix="ride-duration-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = made
    master = os.getpid()

    def remove() -> None:
        if os.getpid() == master:  # not in a worker, which inherits this hook when forked
            shutil.rmtree(made, ignore_errors=True)

    atexit.register(remove)


_metrics_folder()

bind = "0.0.0.0:9696"
workers = _settings.web_workers or os.cpu_count() or 1
threads = _settings.web_threads
# gthread, with each request read whole before a thread takes it: a slow or lying client holds
# no thread (ride_duration.online.worker), and gets a 408 after WEB_CLIENT_TIMEOUT_SECONDS.
worker_class = "ride_duration.online.worker.BufferingWorker"
timeout = _settings.web_timeout_seconds
# On SIGTERM the workers serve WEB_DRAIN_SECONDS more, then finish what is in flight: the master
# kills what is left after graceful_timeout, so it must exceed the drain.
graceful_timeout = _settings.web_drain_seconds + 5
# Load the model once, in the master, before forking: the workers share it, start at once, and
# a model that cannot be loaded stops gunicorn with its one-line error instead of a restart loop.
preload_app = True
# gunicorn 26 opens a control socket in $HOME/.gunicorn; a container or a test needs none.
control_socket_disable = True


def pre_fork(server: object, worker: object) -> None:
    """Before each worker is forked from the master that holds the loaded app and model."""
    # What is loaded now (Flask, numpy, the model) lives as long as the worker: frozen, it is
    # left out of the collector's full passes (a long pause every few thousand allocations,
    # the slowest requests otherwise) and its pages stay shared with the master.
    gc.freeze()


def child_exit(server: object, worker: Any) -> None:
    """In the master, once a worker has exited: its metrics files stay (counts add up across
    restarts); prometheus_client forgets what only a live process may report."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]  # unannotated there
