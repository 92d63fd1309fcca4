"""Score the Kinesis stream without Lambda: `ride-duration-stream`, in a container or a laptop.

The same command as `python stream.py`.

Reads INPUT_STREAM_NAME (`ride_events`) shard by shard from STREAM_START (TRIM_HORIZON or
LATEST) or from its checkpoint (STREAM_CHECKPOINT), hands each batch to the same handler as
the Lambda function, and keeps going until SIGTERM or Ctrl-C, which stop it after the batch at
hand. Records the handler still reports failed after STREAM_MAX_RETRIES retries are kept in
STREAM_DEAD_LETTER. One consumer at a time reads with a checkpoint; a second is refused. The
Kinesis endpoint is KINESIS_ENDPOINT_URL, else AWS_ENDPOINT_URL; calls Kinesis throttles are
tried again (`online.throttling`) for as long as it runs. With STREAM_METRICS_PORT set, it
serves its Prometheus metrics on `http://0.0.0.0:PORT/metrics` (every interface: it runs in a
container). With MODEL_REFRESH_SECONDS set, it looks at the model's alias that often and scores
the next batch with the version it names, once that version loads and passes its check. It
ends with one line on stdout, the records read, scored, failed and dead-lettered, and exit
code 1 when any failed.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ride_duration.core import cli

if TYPE_CHECKING:
    from ride_duration.core.settings import Settings
    from ride_duration.online.consumer import Consumer

# Where the metrics are served: every interface, as a container's published port is reached
# from outside it (127.0.0.1 would answer only inside the container).
METRICS_ADDRESS = "0.0.0.0"


def main(argv: list[str] | None = None, prog: str = "ride-duration-stream") -> int:
    """The command line: `ride-duration-stream [--until-idle] [--debug]`; exit code 1 when a
    record failed, 2 when the consumer could not start."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Score the rides of a Kinesis stream, as the Lambda does."
    )
    parser.add_argument(
        "--until-idle", action="store_true", help="stop once every shard is read to its end"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # botocore's INFO lines (where it found credentials, an endpoint) are not the consumer's.
    logging.getLogger("botocore").setLevel(logging.WARNING)

    consumers: list[Consumer] = []  # the consumer, once made: its tally is the summary

    def run() -> None:
        with cli.role("serving"):
            from ride_duration.core.settings import Settings

        consumers.append(consumer(Settings.from_env(), until_idle=args.until_idle))

    code = cli.run(run, debug=args.debug)
    return code or (1 if consumers and consumers[0].tally.failed else 0)


def consumer(settings: Settings, until_idle: bool) -> Consumer:
    """Check the input, load the model, serve the metrics (STREAM_METRICS_PORT), and consume
    until stopped (SIGTERM, Ctrl-C) or, `until_idle`, caught up; the consumer, once done."""
    with cli.role("serving"):
        from ride_duration.online.checkpoint import Checkpoint
        from ride_duration.online.consumer import Consumer
        from ride_duration.online.consumer_metrics import ConsumerMetrics
        from ride_duration.online.kinesis import check_input, kinesis_client
        from ride_duration.online.stream import scorer
        from ride_duration.online.throttling import RetryingKinesis

    log = logging.getLogger("stream")
    check_input(settings)  # a wrong endpoint or stream: one line, before anything else
    metrics, stop = ConsumerMetrics(), threading.Event()
    # botocore's own retries off: every call, the handler's PutRecords included, is retried
    # (and its throttles counted) by RetryingKinesis alone.
    client = RetryingKinesis(
        kinesis_client(settings, writes_only=False, retries=False),
        stop=stop,
        on_throttle=metrics.on_throttle,
    )
    refresher, handler = scorer(settings, client)
    model = refresher.model
    metrics.serving(model.version, model.ref.run_id)
    refresher.listener = metrics.refreshed
    with contextlib.ExitStack() as cleanup:
        checkpoint = cleanup.enter_context(Checkpoint(Path(settings.stream_checkpoint)))
        if refresher.start():  # MODEL_REFRESH_SECONDS: each batch takes the model serving then
            cleanup.callback(refresher.stop)
        port = settings.stream_metrics_port
        if port is not None:  # once the model is loaded: up means ready
            server = metrics.serve(port, METRICS_ADDRESS)
            cleanup.callback(server.server_close)
            cleanup.callback(server.shutdown)
            log.info("metrics on http://%s:%d/metrics", METRICS_ADDRESS, port)
        consumer = Consumer(
            client=client,
            stream=settings.input_stream_name,
            handler=handler,
            checkpoint=checkpoint,
            dead_letter=Path(settings.stream_dead_letter),
            start=settings.stream_start,
            batch_size=settings.stream_batch_size,
            max_retries=settings.stream_max_retries,
            stop=stop,
            metrics=metrics,
        )
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        log.info(
            "reading %s into %s with %s",
            settings.input_stream_name,
            settings.predictions_stream_name,
            model.version,
        )
        started = time.monotonic()
        consumer.run(until_idle=until_idle)
        print(consumer.tally.summary(time.monotonic() - started, consumer.dead_letter))
    return consumer


def command() -> None:
    """The console script `ride-duration-stream`."""
    cli.exit(main())
