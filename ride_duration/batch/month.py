"""Scoring one month in batch: stream the trip file, score each batch, publish the set once.

Memory is bounded by the batch size (plus the parquet row group being decoded): the month is
never held whole, and readers see nothing of it until every batch is written and the month
passed its checks; then its sink publishes it, manifest and all, in one switch.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from ride_duration.batch import manifest, quality
from ride_duration.batch.output import output_table
from ride_duration.batch.result import MonthResult
from ride_duration.batch.sink import Claim, MonthSink, StagedSet
from ride_duration.core import storage, uris
from ride_duration.core.months import Month
from ride_duration.core.settings import RideIdMode, Settings
from ride_duration.data import features as f
from ride_duration.data import ride_ids, sources
from ride_duration.model.distinct import PredictionCache
from ride_duration.model.predictors import Predictor
from ride_duration.model.resolve import ModelRef

logger = logging.getLogger(__name__)


def score_month(
    *,
    taxi_type: str,
    month: Month,
    input_uri: str,
    sink: MonthSink,
    model: ModelRef,
    predictor: Predictor,
    settings: Settings,
    flow_run_id: str | None = None,
    timings: dict[str, float] | None = None,
) -> MonthResult:
    """Read, clean, identify, predict and publish one month, with its manifest.

    The input and its columns are checked before the output is touched; then the month is
    claimed, streamed into a staged set, checked against the settings' limits, and only then
    published. Any failure publishes nothing. `timings` (seconds spent before, such as the
    model's load) go into the result's and the manifest's seconds.
    """
    result = MonthResult(
        taxi_type=taxi_type,
        month=month,
        input_uri=uris.display_uri(input_uri),
        output_uri=uris.display_uri(sink.current_uri),
        model=model,
        manifest_uri=uris.display_uri(sink.manifest_uri),
        scoring_path=predictor.path,
    )
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    try:
        input_info = storage.file_info(input_uri)
    except FileNotFoundError:
        input_info = {}  # reading it below fails with the clear "no trip file" error
    fields = f.required_fields(predictor.features)
    # The input and its columns are checked (opening it) before the month is claimed.
    with (
        sources.open_trips(input_uri, taxi_type, fields, settings.batch_size) as (columns, batches),
        sink.claim(flow_run_id or "cli", result.label) as claim,
    ):
        streamed = _stream(result, batches, columns, sink, predictor, settings.ride_id_mode)
        streamed.check(result, settings, claim)
        result.seconds = {**(timings or {}), **streamed.stages.rounded()}
        result.seconds["total"] = round(time.perf_counter() - started, 3)
        content = manifest.build(
            result,
            input_info=input_info,
            version_uri=streamed.staged.uri,
            flow_run_id=flow_run_id,
            started_at=started_at,
            code_version=settings.code_version,
        )
        with streamed.stages.timing("publish"):
            sink.publish(streamed.staged, content)
        result.seconds["publish"] = round(streamed.stages.seconds["publish"], 3)
    if result.rows_scored == 0:
        logger.warning("%s: no trip could be scored; the output file is empty", result.label)
    return result


@dataclass
class Stages:
    """Seconds spent in each stage of a month: read, prepare, ride_ids, predict, write."""

    seconds: Counter[str] = field(default_factory=Counter)

    @contextmanager
    def timing(self, stage: str) -> Iterator[None]:
        """Count the block's time to `stage`."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - started

    def reading(self, batches: Iterable) -> Iterator:
        """`batches`, the time each takes to arrive counted as "read"."""
        iterator = iter(batches)
        while True:
            with self.timing("read"):
                batch = next(iterator, None)
            if batch is None:
                return
            yield batch

    def rounded(self) -> dict[str, float]:
        return {stage: round(value, 3) for stage, value in self.seconds.items()}


@dataclass
class Streamed:
    """A month streamed into its staged set: the set, its totals and its stages' times."""

    staged: StagedSet
    stages: Stages
    dropped: Counter[str]
    totals: quality.Totals

    def check(self, result: MonthResult, settings: Settings, claim: Claim) -> None:
        """Record the month's drops and metrics, then fail it (nothing published) if a limit is
        crossed or its claim was taken over."""
        result.rows_dropped = {r.value: self.dropped.get(r.value, 0) for r in f.DropReason}
        result.metrics = self.totals.metrics()
        try:
            quality.check(
                result.label, result.rows_read, result.rows_dropped, result.metrics, settings.limits
            )
            claim.check()  # a run whose claim was taken over publishes nothing
        except BaseException:
            self.staged.discard()
            raise


def _stream(
    result: MonthResult,
    batches: Iterable,
    columns: dict[str, str],
    sink: MonthSink,
    predictor: Predictor,
    ride_id_mode: RideIdMode,
) -> Streamed:
    """Batches in, predictions out into a staged set, published later only if all is well."""
    staged = sink.stage(result.model)
    streamed = Streamed(staged, Stages(), Counter(), quality.Totals())
    stages, cache = streamed.stages, PredictionCache()
    try:
        for raw in stages.reading(batches):
            with stages.timing("prepare"):
                prepared = f.prepare_trips(
                    raw, result.month, first_row=result.rows_read, source_names=columns
                )
            result.rows_read += raw.num_rows
            streamed.dropped.update(prepared.dropped)
            trips = prepared.table
            with stages.timing("ride_ids"):
                ids = _ride_ids(result, trips, ride_id_mode)
            with stages.timing("predict"):
                values, unknown = _predict(predictor, trips, cache)
            with stages.timing("write"):
                table = output_table(trips, ids, values, result.model.label)
                streamed.totals.add(table["diff"].to_numpy(), unknown)
                staged.write(table)
            result.rows_scored += trips.num_rows
    except BaseException:
        staged.discard()
        raise
    return streamed


def _ride_ids(result: MonthResult, trips: pa.Table, mode: RideIdMode) -> pa.Array:
    if mode == "random":
        return ride_ids.random_ride_ids(trips.num_rows)
    rows = trips[f.ROW_NUMBER].to_numpy()
    return ride_ids.deterministic_ride_ids(result.taxi_type, result.month, rows)


def _predict(
    predictor: Predictor, trips: pa.Table, cache: PredictionCache
) -> tuple[np.ndarray, int | None]:
    """The batch's predictions and its count of trips with an unseen pair."""
    if not trips.num_rows:
        return np.empty(0, dtype=np.float64), 0
    predictions = predictor.predict_batch(trips, cache)
    return predictions.values, predictions.unknown_pairs
