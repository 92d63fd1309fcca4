"""Scoring one month in batch: stream the trip file, score each batch, commit the output once.

Memory is bounded by the batch size (plus the parquet row group being decoded): the month is
never held whole, and nothing appears at the output location until every batch is written
and the month passed its checks; its manifest comes last.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import UTC, datetime

import numpy as np

from ride_duration.batch import manifest, quality
from ride_duration.batch.locks import MonthLock
from ride_duration.batch.output import OUTPUT_SCHEMA, output_table
from ride_duration.batch.paths import MonthOutput
from ride_duration.batch.result import MonthResult
from ride_duration.core import storage, uris, writes
from ride_duration.core.months import Month
from ride_duration.core.settings import Limits, RideIdMode
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
    output: MonthOutput,
    model: ModelRef,
    predictor: Predictor,
    batch_size: int,
    ride_id_mode: RideIdMode = "deterministic",
    limits: Limits = Limits(),  # noqa: B008 - frozen
    flow_run_id: str | None = None,
    lock_stale_seconds: float = 600,
    code_version: str | None = None,
    timings: dict[str, float] | None = None,
) -> MonthResult:
    """Read, clean, identify, predict and write one month, then its manifest.

    The input and its columns are checked before the output location is touched; then the
    month is claimed with its lock, streamed into a staged file, checked against `limits`,
    and only then published. Any failure publishes nothing. `timings` (seconds spent before,
    such as the model's load) go into the result's and the manifest's seconds.
    """
    result = MonthResult(
        taxi_type=taxi_type,
        month=month,
        input_uri=uris.display_uri(input_uri),
        output_uri=uris.display_uri(output.data),
        model=model,
        manifest_uri=uris.display_uri(output.manifest),
        scoring_path=predictor.path,
    )
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    try:
        input_info = storage.file_info(input_uri)
    except FileNotFoundError:
        input_info = {}  # reading it below fails with the clear "no trip file" error
    lock = MonthLock(output, owner=flow_run_id or "cli", stale_after_seconds=lock_stale_seconds)
    fields = f.required_fields(predictor.features)
    # The input and its columns are checked (opening it) before the lock is taken.
    with (
        sources.open_trips(input_uri, taxi_type, fields, batch_size) as (columns, batches),
        lock.held(result.label),
    ):
        _stream(result, batches, columns, output, predictor, ride_id_mode, limits, lock)
        result.seconds = {**(timings or {}), **result.seconds}
        result.seconds["total"] = round(time.perf_counter() - started, 3)
        with writes.writing(output.data):
            output_info = storage.file_info(output.data)
            content = manifest.build(
                result,
                input_info=input_info,
                output_info=output_info,
                flow_run_id=flow_run_id,
                started_at=started_at,
                code_version=code_version,
            )
            manifest.write(output.data, content)
    if result.rows_scored == 0:
        logger.warning("%s: no trip could be scored; the output file is empty", result.label)
    return result


def _stream(
    result: MonthResult,
    batches,  # noqa: ANN001 - the batches of sources.open_trips
    columns: dict[str, str],
    output: MonthOutput,
    predictor: Predictor,
    ride_id_mode: RideIdMode,
    limits: Limits,
    lock: MonthLock,
) -> None:
    """Batches in, predictions out into a staged file that is published only if all is well."""
    seconds: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    totals = quality.Totals()
    cache = PredictionCache()
    with writes.writing(output.data):
        writer = writes.AtomicParquetWriter(output.data, OUTPUT_SCHEMA)
    try:
        clock = time.perf_counter()
        for raw in batches:
            seconds["read"] += time.perf_counter() - clock

            clock = time.perf_counter()
            prepared = f.prepare_trips(
                raw, result.month, first_row=result.rows_read, source_names=columns
            )
            result.rows_read += raw.num_rows
            dropped.update(prepared.dropped)
            trips = prepared.table
            seconds["prepare"] += time.perf_counter() - clock

            clock = time.perf_counter()
            if ride_id_mode == "random":
                ids = ride_ids.random_ride_ids(trips.num_rows)
            else:
                rows = trips[f.ROW_NUMBER].to_numpy()
                ids = ride_ids.deterministic_ride_ids(result.taxi_type, result.month, rows)
            seconds["ride_ids"] += time.perf_counter() - clock

            clock = time.perf_counter()
            if trips.num_rows:
                predictions = predictor.predict_batch(trips, cache)
                values, unknown = predictions.values, predictions.unknown_pairs
            else:
                values, unknown = np.empty(0, dtype=np.float64), 0
            seconds["predict"] += time.perf_counter() - clock

            clock = time.perf_counter()
            table = output_table(trips, ids, values, result.model.label)
            totals.add(table["diff"].to_numpy(), unknown)
            with writes.writing(output.data):
                writer.write(table)
            result.rows_scored += trips.num_rows
            seconds["write"] += time.perf_counter() - clock
            clock = time.perf_counter()
        result.rows_dropped = {r.value: dropped.get(r.value, 0) for r in f.DropReason}
        result.metrics = totals.metrics()
        quality.check(result.label, result.rows_read, result.rows_dropped, result.metrics, limits)
        clock = time.perf_counter()
        lock.check()  # a run whose lock was taken over publishes nothing
        with writes.writing(output.data):
            # The previous manifest stays until the new file is in place: then it no longer
            # matches it (is_complete says so) until the new manifest replaces it. A failed
            # commit leaves the previous month whole, manifest and all.
            writer.commit()
            writer.remove_stale_staging()
        seconds["write"] += time.perf_counter() - clock
    except BaseException:
        writer.discard()
        raise
    result.seconds = {stage: round(value, 3) for stage, value in seconds.items()}
