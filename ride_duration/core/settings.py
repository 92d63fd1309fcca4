"""The one home of configuration: a frozen settings object read from the environment.

Each field names its environment variable and holds its default, which runs locally without
any server; the README's configuration table lists every variable (a test holds the two
together). Nothing is read at import time: call `Settings.from_env()` where settings are needed.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ride_duration.core.errors import ConfigurationError
from ride_duration.core.limits import Limits
from ride_duration.core.variables import read_variables, variable, variables

TLC_INPUT_URI_TEMPLATE = (
    "https://d37ci6vzurychx.cloudfront.net/trip-data/"
    "{taxi_type}_tripdata_{year:04d}-{month:02d}.parquet"
)

RideIdMode = Literal["deterministic", "random"]


@dataclass(frozen=True)
class Settings:
    """Locations and knobs of a scoring, training or serving run."""

    # Where the model is.
    tracking_uri: str = variable(
        "MLFLOW_TRACKING_URI", "sqlite:///mlflow.db", "MLflow tracking server or store"
    )
    experiment_name: str = variable(
        "MLFLOW_EXPERIMENT_NAME", "ride-duration", "experiment `train.py` logs to"
    )
    model_name: str = variable("MODEL_NAME", "ride-duration", "registered model name")
    model_alias: str = variable(
        "MODEL_ALIAS", "production", "alias `train.py` moves and scoring uses by default"
    )
    model_uri: str | None = variable(
        "MODEL_URI", None, "model to score with; overrides the two below"
    )
    run_id: str | None = variable(
        "RUN_ID", None, "when set (and `MODEL_URI` is not), score with `runs:/$RUN_ID/model`"
    )
    model_location: str | None = variable(
        "MODEL_LOCATION",
        None,
        "artifact folder or `s3://` location the web service and the stream scorer load when "
        "the tracking server does not answer (a fallback: it must start with a trusted prefix)",
    )
    model_refresh_seconds: int = variable(
        "MODEL_REFRESH_SECONDS",
        0,
        "seconds between the web service's and `stream.py`'s looks at the model's alias: a new "
        "version is loaded and checked beside the one serving, then served (0: never)",
        minimum=0,
        maximum=86400,
    )
    # Loading a model unpickles it, which runs code: only these locations are loaded. Unset
    # (None), the tracking store's own (`model.resolve`); set, exactly the ones it lists.
    trusted_model_prefixes: tuple[str, ...] | None = variable(
        "TRUSTED_MODEL_PREFIXES",
        None,
        "comma-separated locations models may be named by and loaded from, by whole path "
        "segments (a relative one from the current folder); a registered model's files must "
        "be in one too. Unset, the tracking store's: `models:/`, `runs:/`, what a tracking "
        "server serves (`mlflow-artifacts:/`) and the artifact locations the store's "
        "experiments record (a server's `--default-artifact-root s3://bucket/` included), "
        "wherever the process runs; set, it replaces them",
        shown="the tracking store's",
    )
    mlflow_retries: int = variable(
        "MLFLOW_RETRIES",
        3,
        "HTTP retries of each MLflow call, after 1, 2, 4, ... s: a server down fails the "
        "model's resolution after about 7 s "
        "(sets `MLFLOW_HTTP_REQUEST_MAX_RETRIES` unless that is set)",
        minimum=0,
    )
    mlflow_timeout_seconds: int = variable(
        "MLFLOW_TIMEOUT_SECONDS",
        10,
        "timeout of each MLflow HTTP call (sets `MLFLOW_HTTP_REQUEST_TIMEOUT` unless that is set)",
        minimum=1,
    )
    # Batch scoring.
    input_uri_template: str = variable(
        "INPUT_URI_TEMPLATE",
        TLC_INPUT_URI_TEMPLATE,
        "where trip files are: local path, `s3://` or `https://`",
    )
    output_root: str = variable(
        "OUTPUT_ROOT", "output", "where predictions go: local folder or `s3://bucket/prefix`"
    )
    batch_size: int = variable(
        "BATCH_SIZE", 500_000, "rows per batch while scoring (bounds memory)", minimum=1
    )
    ride_id_mode: RideIdMode = variable(
        "RIDE_ID_MODE", "deterministic", "`deterministic` or `random` ride ids"
    )
    limits: Limits = dataclasses.field(default_factory=Limits)
    # A run refreshes its month's lock every minute (a quarter of this when shorter).
    lock_stale_seconds: int = variable(
        "LOCK_STALE_SECONDS",
        600,
        "a month's lock not refreshed for this long is taken over (its run refreshes it "
        "every minute)",
        minimum=4,
    )
    monitoring_report_months: int = variable(
        "MONITORING_REPORT_MONTHS",
        12,
        "months a deployment's score run draws in the monitoring report it writes and links "
        "(docs/monitoring.md; 0: none)",
        minimum=0,
    )
    code_version: str | None = variable(
        "CODE_VERSION",
        None,
        "the code version written into manifests (the image sets it when built)",
        shown="the git commit",
    )
    # Schedules and backfills.
    # The TLC posts month M during month M+2, usually after mid-month; the monthly schedule
    # fires early in the month, so three months back is the latest month sure to be there.
    publication_lag_months: int = variable(
        "PUBLICATION_LAG_MONTHS",
        3,
        "months between a scheduled run and the month it scores",
        minimum=0,
    )
    schedule_timezone: str = variable(
        "SCHEDULE_TIMEZONE",
        "America/New_York",
        "time zone of that computation (the schedules' too)",
    )
    backfill_month_timeout_seconds: int = variable(
        "BACKFILL_MONTH_TIMEOUT_SECONDS",
        3600,
        "how long a backfill waits for one month's run on a worker",
        minimum=1,
    )
    # Without PREFECT_API_URL, commands share one local Prefect server started on this port.
    local_prefect_port: int = variable(
        "LOCAL_PREFECT_PORT",
        4200,
        "port of the local Prefect server commands start when no `PREFECT_API_URL` is set",
        minimum=1,
    )
    # A fresh server migrates its database first: ~20 s idle, much longer on a busy machine.
    local_prefect_start_timeout_seconds: int = variable(
        "LOCAL_PREFECT_START_TIMEOUT_SECONDS",
        300,
        "how long a command waits for that server, or for a slow `PREFECT_API_URL`",
        minimum=1,
    )
    # The web service (gunicorn.conf.py, ride_duration.online.web).
    web_workers: int | None = variable(
        "WEB_WORKERS", None, "gunicorn worker processes", minimum=1, shown="one per core"
    )
    web_threads: int = variable("WEB_THREADS", 4, "threads per worker", minimum=1)
    web_timeout_seconds: int = variable(
        "WEB_TIMEOUT_SECONDS",
        30,
        "gunicorn's worker timeout: a worker silent this long is restarted (not a request limit)",
        minimum=1,
    )
    web_client_timeout_seconds: int = variable(
        "WEB_CLIENT_TIMEOUT_SECONDS",
        10,
        "how long a client has to send a whole request (else 408) and to take its answer",
        minimum=1,
    )
    web_max_batch_rides: int = variable(
        "WEB_MAX_BATCH_RIDES", 1000, "most rides one `POST /predict/batch` may send", minimum=1
    )
    web_drain_seconds: int = variable(
        "WEB_DRAIN_SECONDS",
        5,
        "after SIGTERM, seconds the web service still serves, `/ready` answering 503, before it "
        "stops",
        minimum=0,
    )
    # The stream scorer (lambda_function.py, stream.py): Kinesis in, Kinesis out.
    input_stream_name: str = variable(
        "INPUT_STREAM_NAME", "ride_events", "the Kinesis stream `stream.py` reads"
    )
    predictions_stream_name: str = variable(
        "PREDICTIONS_STREAM_NAME", "ride_predictions", "the Kinesis stream predictions go to"
    )
    kinesis_endpoint_url: str | None = variable(
        "KINESIS_ENDPOINT_URL",
        None,
        "a Kinesis-compatible server (else `AWS_ENDPOINT_URL`, else AWS)",
    )
    test_run: bool = variable(
        "TEST_RUN",
        False,
        "`True`: the stream handler writes nothing and answers its predictions (the course's flag)",
    )
    put_retries: int = variable(
        "PUT_RETRIES", 3, "times a prediction refused by `put_records` is sent again", minimum=0
    )
    stream_checkpoint: str = variable(
        "STREAM_CHECKPOINT",
        "stream-checkpoint.json",
        "the consumer's last sequence number done per shard",
    )
    stream_start: Literal["TRIM_HORIZON", "LATEST"] = variable(
        "STREAM_START",
        "TRIM_HORIZON",
        "where `stream.py` starts a shard it has no checkpoint of (`LATEST`: new records only)",
    )
    stream_batch_size: int = variable(
        "STREAM_BATCH_SIZE", 100, "records per batch the consumer reads and scores", minimum=1
    )
    stream_max_retries: int = variable(
        "STREAM_MAX_RETRIES",
        2,
        "times the consumer retries a batch with reported failures",
        minimum=0,
    )
    stream_dead_letter: str = variable(
        "STREAM_DEAD_LETTER",
        "stream-dead-letter.jsonl",
        "where it keeps records still failed after that",
    )
    stream_metrics_port: int | None = variable(
        "STREAM_METRICS_PORT",
        None,
        "port `stream.py` serves its Prometheus `/metrics` on (unset: none)",
        minimum=1,
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from environment variables, with the defaults above for unset ones."""
        settings = read_variables(cls, os.environ if environ is None else environ)
        _check_timezone(settings.schedule_timezone)
        return settings

    @property
    def default_model_uri(self) -> str:
        """`MODEL_URI`, else the run's model when `RUN_ID` is set, else the aliased version."""
        if self.model_uri:
            return self.model_uri
        if self.run_id:
            return f"runs:/{self.run_id}/model"
        return f"models:/{self.model_name}@{self.model_alias}"

    def configure_mlflow(self) -> None:
        """Point MLflow at the tracking server, bound its HTTP retries and quiet its INFO lines.

        MLflow retries a dead server 7 times with exponential backoff by default (minutes); a
        scoring run should fail within seconds. Through the environment, which MLflow reads when
        it is first used, so that commands that never need MLflow do not import it (1.5 s).
        """
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(self.mlflow_retries))
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(self.mlflow_timeout_seconds))
        # MLflow's INFO lines (tables, experiments, versions created): the commands say theirs.
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
        os.environ["MLFLOW_TRACKING_URI"] = self.tracking_uri
        if "mlflow" in sys.modules:  # already imported: it has read the variable before
            sys.modules["mlflow"].set_tracking_uri(self.tracking_uri)


def environment_variables() -> dict[str, dataclasses.Field[Any]]:
    """Every environment variable the settings read, and the field that holds it."""
    return variables(Settings)


def reference_table() -> str:
    """The documentation's configuration table: every variable, its default and its meaning."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in environment_variables().items():
        default = field.metadata["shown"] or _documented(field.default)
        rows.append(f"| `{name}` | {default} | {field.metadata['meaning']} |")
    return "\n".join(rows) + "\n"


def _documented(default: object) -> str:
    if default is None:
        return "unset"
    if isinstance(default, tuple):
        return "`" + ",".join(default) + "`"
    return f"`{default}`"


def _check_timezone(name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"SCHEDULE_TIMEZONE must be an IANA time zone such as America/New_York, got {name!r}"
        ) from None
