"""The one home of configuration: a frozen settings object read from the environment.

Every default runs locally without any server; the README lists each variable.
Nothing is read at import time: call `Settings.from_env()` where the settings are needed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ride_duration.errors import ConfigurationError

TLC_INPUT_URI_TEMPLATE = (
    "https://d37ci6vzurychx.cloudfront.net/trip-data/"
    "{taxi_type}_tripdata_{year:04d}-{month:02d}.parquet"
)

RideIdMode = Literal["deterministic", "random"]


@dataclass(frozen=True)
class Limits:
    """Checks a month must pass before its output is published (None: no limit)."""

    max_drop_ratio: float | None = 0.5
    max_rmse: float | None = None
    max_mae: float | None = None
    max_abs_mean_error: float | None = None
    max_unknown_pair_share: float | None = None


@dataclass(frozen=True)
class Settings:
    """Locations and knobs of a scoring or training run."""

    tracking_uri: str = "sqlite:///mlflow.db"
    experiment_name: str = "ride-duration"
    model_name: str = "ride-duration"
    model_alias: str = "production"
    model_uri: str | None = None
    run_id: str | None = None
    input_uri_template: str = TLC_INPUT_URI_TEMPLATE
    output_root: str = "output"
    batch_size: int = 500_000
    ride_id_mode: RideIdMode = "deterministic"
    mlflow_retries: int = 2
    mlflow_timeout_seconds: int = 10
    # The TLC posts month M during month M+2, usually after mid-month; the monthly schedule
    # fires early in the month, so three months back is the latest month sure to be there.
    publication_lag_months: int = 3
    schedule_timezone: str = "America/New_York"
    backfill_month_timeout_seconds: int = 3600
    # Loading a model unpickles it, which runs code: only these locations are loaded.
    trusted_model_prefixes: tuple[str, ...] = ("models:/", "runs:/")
    max_drop_ratio: float | None = 0.5
    max_rmse: float | None = None
    max_mae: float | None = None
    max_abs_mean_error: float | None = None
    max_unknown_pair_share: float | None = None
    lock_stale_seconds: int = 6 * 3600
    # Without PREFECT_API_URL, commands share one local Prefect server started on this port.
    local_prefect_port: int = 4200
    # A fresh server migrates its database first: ~20 s idle, much longer on a busy machine.
    local_prefect_start_timeout_seconds: int = 300

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from environment variables, with the defaults above for unset ones."""
        env = os.environ if environ is None else environ
        defaults = cls()

        def text(name: str, default: str | None) -> str | None:
            value = env.get(name, "").strip()
            return value or default

        def integer(name: str, default: int, minimum: int) -> int:
            raw = text(name, None)
            if raw is None:
                return default
            try:
                value = int(raw)
            except ValueError:
                raise ConfigurationError(f"{name} must be a whole number, got {raw!r}") from None
            if value < minimum:
                raise ConfigurationError(f"{name} must be at least {minimum}, got {value}")
            return value

        def number(name: str, default: float | None) -> float | None:
            raw = text(name, None)
            if raw is None:
                return default
            if raw.lower() == "none":
                return None
            try:
                value = float(raw)
            except ValueError:
                raise ConfigurationError(
                    f"{name} must be a number or 'none', got {raw!r}"
                ) from None
            if not value >= 0:
                raise ConfigurationError(f"{name} must be 0 or more, got {raw!r}")
            return value

        def timezone(name: str) -> str:
            try:
                ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                raise ConfigurationError(
                    f"SCHEDULE_TIMEZONE must be an IANA time zone such as America/New_York, "
                    f"got {name!r}"
                ) from None
            return name

        ride_id_mode = text("RIDE_ID_MODE", defaults.ride_id_mode)
        if ride_id_mode not in ("deterministic", "random"):
            raise ConfigurationError(
                f"RIDE_ID_MODE must be 'deterministic' or 'random', got {ride_id_mode!r}"
            )
        return cls(
            tracking_uri=text("MLFLOW_TRACKING_URI", defaults.tracking_uri),
            experiment_name=text("MLFLOW_EXPERIMENT_NAME", defaults.experiment_name),
            model_name=text("MODEL_NAME", defaults.model_name),
            model_alias=text("MODEL_ALIAS", defaults.model_alias),
            model_uri=text("MODEL_URI", None),
            run_id=text("RUN_ID", None),
            input_uri_template=text("INPUT_URI_TEMPLATE", defaults.input_uri_template),
            output_root=text("OUTPUT_ROOT", defaults.output_root),
            batch_size=integer("BATCH_SIZE", defaults.batch_size, minimum=1),
            ride_id_mode=ride_id_mode,
            mlflow_retries=integer("MLFLOW_RETRIES", defaults.mlflow_retries, minimum=0),
            mlflow_timeout_seconds=integer(
                "MLFLOW_TIMEOUT_SECONDS", defaults.mlflow_timeout_seconds, minimum=1
            ),
            publication_lag_months=integer(
                "PUBLICATION_LAG_MONTHS", defaults.publication_lag_months, minimum=0
            ),
            schedule_timezone=timezone(text("SCHEDULE_TIMEZONE", defaults.schedule_timezone)),
            backfill_month_timeout_seconds=integer(
                "BACKFILL_MONTH_TIMEOUT_SECONDS", defaults.backfill_month_timeout_seconds, minimum=1
            ),
            trusted_model_prefixes=tuple(
                prefix.strip()
                for prefix in (text("TRUSTED_MODEL_PREFIXES", None) or "models:/,runs:/").split(",")
                if prefix.strip()
            ),
            max_drop_ratio=number("MAX_DROP_RATIO", defaults.max_drop_ratio),
            max_rmse=number("MAX_RMSE", None),
            max_mae=number("MAX_MAE", None),
            max_abs_mean_error=number("MAX_ABS_MEAN_ERROR", None),
            max_unknown_pair_share=number("MAX_UNKNOWN_PAIR_SHARE", None),
            lock_stale_seconds=integer(
                "LOCK_STALE_SECONDS", defaults.lock_stale_seconds, minimum=1
            ),
            local_prefect_port=integer(
                "LOCAL_PREFECT_PORT", defaults.local_prefect_port, minimum=1
            ),
            local_prefect_start_timeout_seconds=integer(
                "LOCAL_PREFECT_START_TIMEOUT_SECONDS",
                defaults.local_prefect_start_timeout_seconds,
                minimum=1,
            ),
        )

    @property
    def default_model_uri(self) -> str:
        """`MODEL_URI`, else the run's model when `RUN_ID` is set, else the aliased version."""
        if self.model_uri:
            return self.model_uri
        if self.run_id:
            return f"runs:/{self.run_id}/model"
        return f"models:/{self.model_name}@{self.model_alias}"

    def output_root_for(self, requested: str | None) -> str:
        """The output root a run writes under: OUTPUT_ROOT, or a location inside it."""
        from ride_duration import storage

        storage.check_no_credentials(self.output_root, "OUTPUT_ROOT")
        if not requested:
            return self.output_root
        storage.check_no_credentials(requested, "output_root")
        if not storage.is_within(requested, self.output_root):
            raise ConfigurationError(
                f"output_root {storage.display_uri(requested)} is outside OUTPUT_ROOT "
                f"{storage.display_uri(self.output_root)}: parameters may only choose a "
                "location inside it"
            )
        return requested

    def input_uri(self, taxi_type: str, year: int, month: int) -> str:
        """The location of one month's trip file."""
        return format_template(self.input_uri_template, taxi_type, year, month)

    @property
    def limits(self) -> Limits:
        """The checks a month must pass before it is published."""
        return Limits(
            max_drop_ratio=self.max_drop_ratio,
            max_rmse=self.max_rmse,
            max_mae=self.max_mae,
            max_abs_mean_error=self.max_abs_mean_error,
            max_unknown_pair_share=self.max_unknown_pair_share,
        )

    def configure_mlflow(self) -> None:
        """Point MLflow at the tracking server and bound its HTTP retries.

        MLflow retries a dead server 7 times with exponential backoff by default (minutes);
        a scoring run should fail within seconds and let the flow's own retries decide.
        """
        import mlflow

        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(self.mlflow_retries))
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(self.mlflow_timeout_seconds))
        mlflow.set_tracking_uri(self.tracking_uri)


def format_template(template: str, taxi_type: str, year: int, month: int) -> str:
    """Fill `{taxi_type}`, `{year}` and `{month}` (with format specs) into a URI template.

    Only those three names are allowed, and no attribute or index access: a template comes
    from a flow parameter, and `str.format` would otherwise reach into Python objects.
    """
    import string

    values = {"taxi_type": taxi_type, "year": year, "month": month}
    for _, field_name, _, _ in string.Formatter().parse(template):
        if field_name is not None and field_name not in values:
            raise ConfigurationError(
                f"URI template field {{{field_name}}} is not one of "
                "{taxi_type}, {year}, {month} (with an optional format like {month:02d})"
            )
    try:
        return template.format(**values)
    except (ValueError, IndexError) as error:
        raise ConfigurationError(f"bad URI template {template!r}: {error}") from None
