"""gunicorn's settings for the web service: gunicorn reads this file from the folder it starts in.

`gunicorn --bind 0.0.0.0:9696 predict:app` then runs WEB_WORKERS processes (one per core by
default) of WEB_THREADS threads each; flags given on the command line win over these.
"""

import gc
import os
import sys

from ride_duration.core.errors import ConfigurationError
from ride_duration.core.settings import Settings

try:
    _settings = Settings.from_env()
except ConfigurationError as error:
    # gunicorn reports a config file's exception with its traceback; a bad WEB_* variable is
    # the operator's one-line mistake (SystemExit passes through gunicorn's handler).
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)

bind = "0.0.0.0:9696"
workers = _settings.web_workers or os.cpu_count() or 1
threads = _settings.web_threads
# gthread, with each request read whole before a thread takes it: a slow or lying client holds
# no thread (ride_duration.online.worker), and gets a 408 after WEB_CLIENT_TIMEOUT_SECONDS.
worker_class = "ride_duration.online.worker.BufferingWorker"
timeout = _settings.web_timeout_seconds
graceful_timeout = 10
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
