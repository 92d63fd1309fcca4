"""Configuration from the environment: `ride_duration.core.settings`."""

from __future__ import annotations

import dataclasses

import pytest

from ride_duration.core.errors import ConfigurationError, ScoringError
from ride_duration.core.months import Month
from ride_duration.core.settings import TLC_INPUT_URI_TEMPLATE, Settings
from ride_duration.data.sources import trip_file_uri

DEFAULTS = {
    "tracking_uri": "sqlite:///mlflow.db",
    "experiment_name": "ride-duration",
    "model_name": "ride-duration",
    "model_alias": "production",
    "model_uri": None,
    "run_id": None,
    "model_location": None,
    "model_refresh_seconds": 0,
    "input_uri_template": TLC_INPUT_URI_TEMPLATE,
    "output_root": "output",
    "batch_size": 500_000,
    "ride_id_mode": "deterministic",
    "mlflow_retries": 3,
    "mlflow_timeout_seconds": 10,
    "publication_lag_months": 3,
    "schedule_timezone": "America/New_York",
    "backfill_month_timeout_seconds": 3600,
    "trusted_model_prefixes": None,
    "limits": {
        "max_drop_ratio": 0.5,
        "max_rmse": None,
        "max_mae": None,
        "max_abs_mean_error": None,
        "max_unknown_pair_share": None,
        "warn_psi": 0.25,
        "max_psi": None,
        "max_js_distance": None,
    },
    "lock_stale_seconds": 600,
    "monitoring_report_months": 12,
    "code_version": None,
    "web_workers": None,
    "web_threads": 4,
    "web_timeout_seconds": 30,
    "web_client_timeout_seconds": 10,
    "web_max_batch_rides": 1000,
    "web_drain_seconds": 5,
    "input_stream_name": "ride_events",
    "predictions_stream_name": "ride_predictions",
    "kinesis_endpoint_url": None,
    "test_run": False,
    "put_retries": 3,
    "stream_checkpoint": "stream-checkpoint.json",
    "stream_start": "TRIM_HORIZON",
    "stream_batch_size": 100,
    "stream_max_retries": 2,
    "stream_dead_letter": "stream-dead-letter.jsonl",
    "stream_metrics_port": None,
    "local_prefect_port": 4200,
    "local_prefect_start_timeout_seconds": 300,
}


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"UNRELATED": "1", "PATH": "/usr/bin"},
        # blank values count as unset
        {"MODEL_URI": "", "RUN_ID": "  ", "BATCH_SIZE": "", "RIDE_ID_MODE": " ", "OUTPUT_ROOT": ""},
    ],
)
def test_defaults(environ):
    assert dataclasses.asdict(Settings.from_env(environ)) == DEFAULTS


def test_from_env_reads_the_process_environment_by_default(monkeypatch):
    monkeypatch.setenv("OUTPUT_ROOT", "s3://predictions/ride-duration")
    monkeypatch.setenv("BATCH_SIZE", "1234")
    settings = Settings.from_env()
    assert settings.output_root == "s3://predictions/ride-duration"
    assert settings.batch_size == 1234


@pytest.mark.parametrize(
    ("variable", "value", "attribute", "expected"),
    [
        ("MLFLOW_TRACKING_URI", "http://mlflow:5000", "tracking_uri", "http://mlflow:5000"),
        ("MLFLOW_EXPERIMENT_NAME", "exp", "experiment_name", "exp"),
        ("MODEL_NAME", "other", "model_name", "other"),
        ("MODEL_ALIAS", "staging", "model_alias", "staging"),
        ("MODEL_URI", " runs:/abc/model ", "model_uri", "runs:/abc/model"),
        ("RUN_ID", "abc", "run_id", "abc"),
        (
            "INPUT_URI_TEMPLATE",
            "/data/{taxi_type}.parquet",
            "input_uri_template",
            "/data/{taxi_type}.parquet",
        ),
        ("OUTPUT_ROOT", "s3://bucket/out", "output_root", "s3://bucket/out"),
        ("BATCH_SIZE", "1", "batch_size", 1),
        ("BATCH_SIZE", " 100000 ", "batch_size", 100_000),
        ("RIDE_ID_MODE", "random", "ride_id_mode", "random"),
        ("RIDE_ID_MODE", "deterministic", "ride_id_mode", "deterministic"),
        ("MLFLOW_RETRIES", "0", "mlflow_retries", 0),
        ("MLFLOW_TIMEOUT_SECONDS", "1", "mlflow_timeout_seconds", 1),
        ("PUBLICATION_LAG_MONTHS", "0", "publication_lag_months", 0),
        ("SCHEDULE_TIMEZONE", "Europe/Paris", "schedule_timezone", "Europe/Paris"),
        ("BACKFILL_MONTH_TIMEOUT_SECONDS", "60", "backfill_month_timeout_seconds", 60),
        ("LOCAL_PREFECT_PORT", "4321", "local_prefect_port", 4321),
        ("MODEL_LOCATION", "s3://models/m/artifacts", "model_location", "s3://models/m/artifacts"),
        ("MODEL_REFRESH_SECONDS", "30", "model_refresh_seconds", 30),
        ("MODEL_REFRESH_SECONDS", "0", "model_refresh_seconds", 0),
        ("WEB_WORKERS", "3", "web_workers", 3),
        ("WEB_THREADS", "8", "web_threads", 8),
        ("WEB_TIMEOUT_SECONDS", "60", "web_timeout_seconds", 60),
        ("WEB_MAX_BATCH_RIDES", "50", "web_max_batch_rides", 50),
        ("INPUT_STREAM_NAME", "rides", "input_stream_name", "rides"),
        ("PREDICTIONS_STREAM_NAME", "out", "predictions_stream_name", "out"),
        ("KINESIS_ENDPOINT_URL", "http://k:4566", "kinesis_endpoint_url", "http://k:4566"),
        ("TEST_RUN", "True", "test_run", True),
        ("TEST_RUN", "false", "test_run", False),
        ("PUT_RETRIES", "0", "put_retries", 0),
        ("STREAM_CHECKPOINT", "/tmp/c.json", "stream_checkpoint", "/tmp/c.json"),
        ("STREAM_START", "LATEST", "stream_start", "LATEST"),
        ("STREAM_BATCH_SIZE", "500", "stream_batch_size", 500),
        ("STREAM_MAX_RETRIES", "5", "stream_max_retries", 5),
        ("STREAM_DEAD_LETTER", "dl.jsonl", "stream_dead_letter", "dl.jsonl"),
        (
            "LOCAL_PREFECT_START_TIMEOUT_SECONDS",
            "900",
            "local_prefect_start_timeout_seconds",
            900,
        ),
    ],
)
def test_each_variable(variable, value, attribute, expected):
    settings = Settings.from_env({variable: value})
    assert getattr(settings, attribute) == expected
    others = {key: default for key, default in DEFAULTS.items() if key != attribute}
    assert {key: dataclasses.asdict(settings)[key] for key in others} == others


@pytest.mark.parametrize(
    ("environ", "uri"),
    [
        ({}, "models:/ride-duration@production"),
        ({"MODEL_NAME": "taxi", "MODEL_ALIAS": "champion"}, "models:/taxi@champion"),
        ({"MODEL_ALIAS": "challenger"}, "models:/ride-duration@challenger"),
        ({"RUN_ID": "abc123"}, "runs:/abc123/model"),
        (
            {"RUN_ID": "abc123", "MODEL_NAME": "taxi", "MODEL_ALIAS": "champion"},
            "runs:/abc123/model",
        ),
        ({"MODEL_URI": "models:/taxi/3", "RUN_ID": "abc123"}, "models:/taxi/3"),
        (
            {"MODEL_URI": "s3://bucket/model", "RUN_ID": "abc", "MODEL_NAME": "taxi"},
            "s3://bucket/model",
        ),
        ({"MODEL_URI": "", "RUN_ID": "abc123"}, "runs:/abc123/model"),
    ],
)
def test_default_model_uri_precedence(environ, uri):
    assert Settings.from_env(environ).default_model_uri == uri


@pytest.mark.parametrize(
    ("taxi_type", "year", "month", "uri"),
    [
        (
            "green",
            2021,
            3,
            "https://d37ci6vzurychx.cloudfront.net/trip-data/green_tripdata_2021-03.parquet",
        ),
        (
            "fhvhv",
            2023,
            12,
            "https://d37ci6vzurychx.cloudfront.net/trip-data/fhvhv_tripdata_2023-12.parquet",
        ),
        (
            "yellow",
            2009,
            1,
            "https://d37ci6vzurychx.cloudfront.net/trip-data/yellow_tripdata_2009-01.parquet",
        ),
    ],
)
def test_input_uri_of_the_default_template(taxi_type, year, month, uri):
    template = Settings.from_env({}).input_uri_template
    assert trip_file_uri(template, taxi_type, Month(year, month)) == uri


def test_input_uri_of_a_custom_template():
    settings = Settings.from_env(
        {"INPUT_URI_TEMPLATE": "s3://tlc/{taxi_type}/{year:04d}/{month:02d}.parquet"}
    )
    uri = trip_file_uri(settings.input_uri_template, "fhv", Month(2020, 5))
    assert uri == "s3://tlc/fhv/2020/05.parquet"


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("BATCH_SIZE", "abc", "whole number"),
        ("BATCH_SIZE", "1.5", "whole number"),
        ("BATCH_SIZE", "1e6", "whole number"),
        ("BATCH_SIZE", "0", "at least 1"),
        ("BATCH_SIZE", "-5", "at least 1"),
        ("MLFLOW_RETRIES", "-1", "at least 0"),
        ("MLFLOW_RETRIES", "two", "whole number"),
        ("MLFLOW_TIMEOUT_SECONDS", "0", "at least 1"),
        ("RIDE_ID_MODE", "sequential", "'deterministic' or 'random'"),
        ("RIDE_ID_MODE", "Random", "'deterministic' or 'random'"),
        ("PUBLICATION_LAG_MONTHS", "-1", "at least 0"),
        ("SCHEDULE_TIMEZONE", "Mars/Olympus", "IANA time zone"),
        ("BACKFILL_MONTH_TIMEOUT_SECONDS", "0", "at least 1"),
        ("TEST_RUN", "maybe", "True or False"),
        ("STREAM_START", "NOW", "'TRIM_HORIZON' or 'LATEST'"),
        ("WEB_WORKERS", "0", "at least 1"),
        ("MODEL_REFRESH_SECONDS", "-1", "at least 0"),
        ("MODEL_REFRESH_SECONDS", "86401", "at most 86400"),
        ("MODEL_REFRESH_SECONDS", "0.5", "whole number"),
    ],
)
def test_bad_values_are_configuration_errors_naming_the_variable(variable, value, says):
    with pytest.raises(ConfigurationError) as raised:
        Settings.from_env({variable: value})
    message = str(raised.value)
    assert variable in message
    assert says in message
    assert repr(value.strip()) in message or value.strip() in message
    assert isinstance(raised.value, ScoringError)
    assert raised.value.exit_code == 2


def test_settings_are_frozen():
    settings = Settings.from_env({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.batch_size = 1  # type: ignore[misc]
