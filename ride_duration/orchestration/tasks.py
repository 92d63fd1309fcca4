"""Prefect tasks of the flows, and what every flow does first. Only I/O is retried."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from ride_duration.batch import paths, result
from ride_duration.batch.month import score_month
from ride_duration.batch.sink import MonthSink
from ride_duration.core import uris
from ride_duration.core.errors import ScoringError
from ride_duration.core.months import Month
from ride_duration.core.settings import Settings
from ride_duration.core.storage import storage_errors
from ride_duration.data.features import available_features
from ride_duration.model import service
from ride_duration.model.loading import load_profile
from ride_duration.model.resolve import ModelRef, resolve_model

RETRY_DELAYS_SECONDS: list[float] = [2, 10]
Parameters = ParamSpec("Parameters")  # of a task's function
Returned = TypeVar("Returned")  # what a task's function returns


def is_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry network and storage hiccups, never a bad input, model or schema."""
    try:
        state.result()
    except ScoringError as error:
        return error.transient
    except storage_errors():
        return True
    except BaseException:  # noqa: BLE001 - any other failure is a bug or a contract error
        return False
    return False


def io_task(name: str) -> Callable[[Callable[Parameters, Returned]], Task[Parameters, Returned]]:
    """A task retried on I/O failures only (is_transient), never cached: a month is scored anew."""
    return task(
        name=name,
        retries=len(RETRY_DELAYS_SECONDS),
        retry_delay_seconds=RETRY_DELAYS_SECONDS,
        retry_condition_fn=is_transient,
        cache_policy=NO_CACHE,
    )


# Not retried as a task: every call to the tracking server is retried already (MLFLOW_RETRIES,
# with backoff), and a task retry on top would multiply the waits of a server that is down.
@task(name="resolve-model", cache_policy=NO_CACHE)
def resolve_model_task(
    model_uri: str, trusted_prefixes: tuple[str, ...] | None, tracking_uri: str
) -> ModelRef:
    """Pin the model URI to one version (an alias is resolved here, once)."""
    return resolve_model(model_uri, trusted_prefixes, tracking_uri=tracking_uri)


@io_task(name="score-month")
def score_month_task(
    taxi_type: str,
    month: Month,
    input_uri: str,
    sink: MonthSink,
    model: ModelRef,
    settings: Settings,
    timings: dict[str, float] | None = None,
) -> result.MonthResult:
    """Stream the month's trips through the model into its sink, published as the current set.

    `timings` are seconds spent before (the model's resolution), kept with the month's own.
    """
    started = time.perf_counter()
    predictor = service.predictor_for(model, available_features(taxi_type))
    reference = load_profile(model.resolved_uri, model.location)
    timings = {**(timings or {}), "model_load": round(time.perf_counter() - started, 3)}
    return score_month(
        taxi_type=taxi_type,
        month=month,
        input_uri=input_uri,
        sink=sink,
        model=model,
        predictor=predictor,
        settings=settings,
        reference=reference,
        flow_run_id=str(flow_run.id) if flow_run.id else None,
        timings=timings,
    )


@dataclass(frozen=True)
class RunSetup:
    """What a flow run works with: its settings, its locations and its model, pinned."""

    settings: Settings
    input_uri_template: str
    output_root: str
    model: ModelRef
    resolve_seconds: float


def prepare_run(model_uri: str, input_uri_template: str, output_root: str) -> RunSetup:
    """What every flow does first: read settings, point MLflow, check locations, pin the model.

    Empty arguments mean the settings' own (MODEL_URI and so on).
    """
    settings = Settings.from_env()
    settings.configure_mlflow()
    template = input_uri_template or settings.input_uri_template
    uris.check_no_credentials(template, "input_uri_template")
    root = paths.output_root(settings.output_root, output_root)
    started = time.perf_counter()
    model = resolve_model_task(
        model_uri or settings.default_model_uri,
        settings.trusted_model_prefixes,
        settings.tracking_uri,
    )
    return RunSetup(settings, template, root, model, round(time.perf_counter() - started, 3))
