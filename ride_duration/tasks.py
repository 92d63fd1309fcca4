"""Prefect tasks of the score flow. Only I/O is retried; contract failures fail at once."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from ride_duration import month as m
from ride_duration.errors import ScoringError
from ride_duration.features import available_features
from ride_duration.model import ModelRef, load_model, resolve_model
from ride_duration.scoring import make_predictor
from ride_duration.settings import Settings
from ride_duration.storage import storage_errors

RETRY_DELAYS_SECONDS = [2, 10]


def is_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry network and storage hiccups, never a bad input, model or schema."""
    try:
        state.result()
    except ScoringError as error:
        return getattr(error, "transient", False)
    except storage_errors():
        return True
    except BaseException:  # noqa: BLE001 - any other failure is a bug or a contract error
        return False
    return False


@task(
    name="resolve-model",
    retries=len(RETRY_DELAYS_SECONDS),
    retry_delay_seconds=RETRY_DELAYS_SECONDS,
    retry_condition_fn=is_transient,
    cache_policy=NO_CACHE,
)
def resolve_model_task(model_uri: str, trusted_prefixes: tuple[str, ...]) -> ModelRef:
    """Pin the model URI to one version (an alias is resolved here, once)."""
    return resolve_model(model_uri, trusted_prefixes)


@task(
    name="score-month",
    retries=len(RETRY_DELAYS_SECONDS),
    retry_delay_seconds=RETRY_DELAYS_SECONDS,
    retry_condition_fn=is_transient,
    cache_policy=NO_CACHE,
)
def score_month_task(
    taxi_type: str,
    year: int,
    month: int,
    input_uri: str,
    output_uri: str,
    model: ModelRef,
    settings: Settings,
) -> m.MonthResult:
    """Stream the month's trips through the model into one committed parquet file."""
    predictor = make_predictor(load_model(model.resolved_uri), available_features(taxi_type))
    return m.score_month(
        taxi_type=taxi_type,
        year=year,
        month=month,
        input_uri=input_uri,
        output_uri=output_uri,
        model=model,
        predictor=predictor,
        batch_size=settings.batch_size,
        ride_id_mode=settings.ride_id_mode,
        limits=settings.limits,
        flow_run_id=str(flow_run.id) if flow_run.id else None,
        lock_stale_seconds=settings.lock_stale_seconds,
    )
