"""Scoring one month: stream the trip file in batches, score each batch, commit the output once.

Memory is bounded by the batch size (plus the parquet row group being decoded): the month is
never held whole, and nothing appears at the output location until every batch is written.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from ride_duration import features as f
from ride_duration import manifest, ride_ids, storage
from ride_duration import trips as t
from ride_duration.errors import MonthBusyError, OutputWriteError, QualityError
from ride_duration.model import ModelRef
from ride_duration.scoring import OUTPUT_SCHEMA, Predictor, output_table
from ride_duration.settings import Limits, RideIdMode

logger = logging.getLogger(__name__)
DEFAULT_LIMITS = Limits()


@dataclass
class MonthResult:
    """What scoring one month read, dropped, scored and wrote."""

    taxi_type: str
    year: int
    month: int
    input_uri: str
    output_uri: str
    model: ModelRef
    rows_read: int = 0
    rows_dropped: dict[str, int] = field(default_factory=dict)
    rows_scored: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float | None] = field(default_factory=dict)
    manifest_uri: str = ""

    @property
    def label(self) -> str:
        """The month as "green 2021-03"."""
        return f"{self.taxi_type} {self.year:04d}-{self.month:02d}"


def output_uri(output_root: str, taxi_type: str, year: int, month: int, model: ModelRef) -> str:
    """Where a month's predictions by one model go (hive-style partitions, one file per model)."""
    return storage.join(
        output_root,
        f"taxi_type={taxi_type}",
        f"year={year:04d}",
        f"month={month:02d}",
        f"{model_file_stem(model)}.parquet",
    )


def model_file_stem(model: ModelRef) -> str:
    """The model's run id, or a short hash of its location when no run is known."""
    if model.run_id:
        return model.run_id
    return "model-" + hashlib.sha256(model.resolved_uri.encode()).hexdigest()[:16]


@contextmanager
def open_trips(
    input_uri: str, taxi_type: str, fields: list[str], batch_size: int
) -> Iterator[tuple[dict[str, str], Iterator[pa.Table]]]:
    """A month's trip file as batches of canonical columns, once it is known to have them.

    Yields the canonical-to-source column names and the batches (read while the block runs).
    """
    with storage.open_parquet(input_uri) as parquet:
        columns = t.source_columns(taxi_type, parquet.schema_arrow.names, fields)
        renamed = {source: canonical for canonical, source in columns.items()}
        batches = storage.iter_batches(parquet, list(columns.values()), batch_size, input_uri)
        yield (
            columns,
            (
                pa.Table.from_batches([batch]).rename_columns(
                    [renamed[name] for name in batch.schema.names]
                )
                for batch in batches
            ),
        )


def score_month(
    *,
    taxi_type: str,
    year: int,
    month: int,
    input_uri: str,
    output_uri: str,
    model: ModelRef,
    predictor: Predictor,
    batch_size: int,
    ride_id_mode: RideIdMode = "deterministic",
    limits: Limits = DEFAULT_LIMITS,
    flow_run_id: str | None = None,
    lock_stale_seconds: float = 6 * 3600,
) -> MonthResult:
    """Read, clean, identify, predict and write one month, then its manifest.

    The month is claimed with a lock, streamed into a staged file, checked against `limits`,
    and only then published; the manifest is written last. Any failure publishes nothing.
    """
    result = MonthResult(
        taxi_type=taxi_type,
        year=year,
        month=month,
        input_uri=storage.display_uri(input_uri),
        output_uri=storage.display_uri(output_uri),
        model=model,
        manifest_uri=storage.display_uri(manifest.manifest_uri(output_uri)),
    )
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    lock = manifest.MonthLock(
        output_uri, owner=flow_run_id or "cli", stale_after_seconds=lock_stale_seconds
    )
    try:
        input_info = storage.file_info(input_uri)
    except FileNotFoundError:
        input_info = {}  # reading it below fails with the clear "no trip file" error
    _stream(result, input_uri, output_uri, predictor, batch_size, ride_id_mode, limits, lock)
    try:
        result.seconds["total"] = round(time.perf_counter() - started, 3)
        output_info = _guard_output(lambda: storage.file_info(output_uri), output_uri)
        content = _manifest(result, input_info, output_info, flow_run_id, started_at)
        _guard_output(lambda: manifest.write(output_uri, content), output_uri)
    finally:
        lock.release()
    if result.rows_scored == 0:
        logger.warning("%s: no trip could be scored; the output file is empty", result.label)
    return result


def _stream(
    result: MonthResult,
    input_uri: str,
    output_uri: str,
    predictor: Predictor,
    batch_size: int,
    ride_id_mode: RideIdMode,
    limits: Limits,
    lock: manifest.MonthLock,
) -> None:
    """Batches in, predictions out into a staged file that is published only if all is well.

    The input and its columns are checked before the output location is touched; then the
    month's lock is taken, and kept (for the manifest) unless something fails.
    """
    seconds: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    totals = np.zeros(3)  # sum of diff, of diff squared, of |diff|
    unknown_pairs = 0
    fields = f.required_fields(predictor.features)
    with open_trips(input_uri, result.taxi_type, fields, batch_size) as (columns, batches):
        holder = _guard_output(lock.acquire, output_uri)
        if holder is not None:
            raise MonthBusyError(
                f"{result.label} is being scored with this model by {holder.get('owner')} on "
                f"{holder.get('host')} since {holder.get('since')}: wait for it, or delete "
                f"{storage.display_uri(lock.uri)} if that run is dead"
            )
        writer = None
        try:
            writer = _guard_output(
                lambda: storage.AtomicParquetWriter(output_uri, OUTPUT_SCHEMA), output_uri
            )
            clock = time.perf_counter()
            for raw in batches:
                seconds["read"] += time.perf_counter() - clock

                clock = time.perf_counter()
                prepared = f.prepare_trips(
                    raw,
                    result.year,
                    result.month,
                    first_row=result.rows_read,
                    source_names=columns,
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
                    ids = ride_ids.deterministic_ride_ids(
                        result.taxi_type, result.year, result.month, rows
                    )
                seconds["ride_ids"] += time.perf_counter() - clock

                clock = time.perf_counter()
                predictions = (
                    predictor.predict(trips) if trips.num_rows else np.empty(0, dtype=np.float64)
                )
                if trips.num_rows:
                    unknown_pairs += getattr(predictor, "last_unknown_pairs", 0)
                seconds["predict"] += time.perf_counter() - clock

                clock = time.perf_counter()
                table = output_table(trips, ids, predictions, result.model.label)
                diff = table["diff"].to_numpy()
                totals += (diff.sum(), np.square(diff).sum(), np.abs(diff).sum())
                _guard_output(lambda table=table: writer.write(table), output_uri)
                result.rows_scored += trips.num_rows
                seconds["write"] += time.perf_counter() - clock
                clock = time.perf_counter()
            result.rows_dropped = {r.value: dropped.get(r.value, 0) for r in f.DropReason}
            result.metrics = _metrics(result.rows_scored, totals, unknown_pairs, predictor)
            _check(result, limits)
            clock = time.perf_counter()
            # Readers must not see the old manifest beside the file replacing its output; a run
            # that failed before this point leaves the previous complete month untouched.
            _guard_output(lambda: storage.remove(manifest.manifest_uri(output_uri)), output_uri)
            _guard_output(writer.commit, output_uri)
            _guard_output(writer.remove_stale_staging, output_uri)
            seconds["write"] += time.perf_counter() - clock
        except BaseException:
            if writer is not None:
                writer.discard()
            lock.release()
            raise
    result.seconds = {stage: round(value, 3) for stage, value in seconds.items()}


def _metrics(rows: int, totals: np.ndarray, unknown_pairs: int, predictor: Predictor) -> dict:
    """RMSE, MAE and mean error (actual - predicted) in minutes, and the unknown-pair share."""
    if rows == 0:
        return {"rmse": None, "mae": None, "mean_error": None, "unknown_pair_share": None}
    knows_pairs = f.PU_DO in predictor.features and hasattr(predictor, "last_unknown_pairs")
    return {
        "rmse": round(float(np.sqrt(totals[1] / rows)), 6),
        "mae": round(float(totals[2] / rows), 6),
        "mean_error": round(float(totals[0] / rows), 6),
        "unknown_pair_share": round(unknown_pairs / rows, 6) if knows_pairs else None,
    }


def _check(result: MonthResult, limits: Limits) -> None:
    """Fail the month, before anything is published, when a limit is crossed."""
    problems = []
    dropped = sum(result.rows_dropped.values())
    if result.rows_read and limits.max_drop_ratio is not None:
        ratio = dropped / result.rows_read
        if ratio > limits.max_drop_ratio:
            worst = max(result.rows_dropped, key=result.rows_dropped.get)
            problems.append(
                f"{ratio:.1%} of rows dropped (most: {worst} {result.rows_dropped[worst]:,}) "
                f"> MAX_DROP_RATIO {limits.max_drop_ratio:g}"
            )
    checks = (
        ("rmse", limits.max_rmse, "MAX_RMSE"),
        ("mae", limits.max_mae, "MAX_MAE"),
        ("mean_error", limits.max_abs_mean_error, "MAX_ABS_MEAN_ERROR"),
        ("unknown_pair_share", limits.max_unknown_pair_share, "MAX_UNKNOWN_PAIR_SHARE"),
    )
    for name, limit, setting in checks:
        value = result.metrics.get(name)
        if limit is not None and value is not None and abs(value) > limit:
            problems.append(f"{name} {value:.4g} > {setting} {limit:g}")
    if problems:
        raise QualityError(
            f"{result.label} failed its checks: {'; '.join(problems)}; nothing was written"
        )


def _guard_output(action, output_uri: str):  # noqa: ANN001, ANN202 - a thin wrapper
    """Run a write to the output location; a refusal becomes one clear, retryable error."""
    try:
        return action()
    except storage.storage_errors() as error:
        if isinstance(error, FileNotFoundError) and "bucket" not in str(error).lower():
            raise
        where = storage.display_uri(output_uri)
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        failure = OutputWriteError(
            f"cannot write {where}: {reason}; check OUTPUT_ROOT and that it accepts writes"
        )
        # A refusal (permissions, a file in the way, no such bucket) will not pass on retry.
        refused = (PermissionError, NotADirectoryError, FileExistsError, IsADirectoryError)
        failure.transient = not (isinstance(error, refused) or "bucket" in reason.lower())
        raise failure from error


def _manifest(
    result: MonthResult,
    input_info: dict,
    output_info: dict,
    flow_run_id: str | None,
    started_at: datetime,
) -> dict:
    model = result.model
    return {
        "manifest_version": manifest.MANIFEST_VERSION,
        "taxi_type": result.taxi_type,
        "month": f"{result.year:04d}-{result.month:02d}",
        "input": {"uri": result.input_uri, **input_info},
        "output": {"uri": result.output_uri, "rows": result.rows_scored, **output_info},
        "rows_read": result.rows_read,
        "rows_dropped": result.rows_dropped,
        "rows_scored": result.rows_scored,
        "model": {
            "uri": storage.display_uri(model.uri),
            "resolved_uri": storage.display_uri(model.resolved_uri),
            "name": model.name,
            "version": model.version,
            "run_id": model.run_id,
            "label": model.label,
        },
        "metrics": result.metrics,
        "code_version": manifest.code_version(),
        "flow_run_id": flow_run_id,
        "started_at": started_at.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": result.seconds,
    }


def summary(result: MonthResult) -> dict:
    """The result as plain JSON-ready values (what the flow returns and the artifact shows)."""
    return {
        "taxi_type": result.taxi_type,
        "month": f"{result.year:04d}-{result.month:02d}",
        "input": result.input_uri,
        "output": result.output_uri,
        "model_uri": storage.display_uri(result.model.uri),
        "model_version": result.model.label,
        "model_run_id": result.model.run_id,
        "rows_read": result.rows_read,
        "rows_dropped": dict(result.rows_dropped),
        "rows_scored": result.rows_scored,
        "metrics": dict(result.metrics),
        "manifest": result.manifest_uri,
        "seconds": dict(result.seconds),
    }


def markdown_report(result: MonthResult) -> str:
    """A short markdown summary of one scored month, for the run's Prefect artifact."""
    lines = [
        f"# Ride durations, {result.label}",
        "",
        "| | |",
        "|---|---|",
        f"| input | `{result.input_uri}` |",
        f"| output | `{result.output_uri}` |",
        f"| model | `{storage.display_uri(result.model.uri)}` = {result.model.label} |",
        f"| rows read | {result.rows_read:,} |",
        *(
            f"| dropped: {reason.replace('_', ' ')} | {count:,} |"
            for reason, count in result.rows_dropped.items()
        ),
        f"| rows scored | {result.rows_scored:,} |",
        *(
            f"| {name.replace('_', ' ')} | {'n/a' if value is None else f'{value:.4f}'} |"
            for name, value in result.metrics.items()
        ),
        f"| manifest | `{result.manifest_uri}` |",
        f"| seconds | {result.seconds.get('total', 0):.1f} |",
    ]
    return "\n".join(lines) + "\n"
