"""Scoring one month: stream the trip file in batches, score each batch, commit the output once.

Memory is bounded by the batch size (plus the parquet row group being decoded): the month is
never held whole, and nothing appears at the output location until every batch is written.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from ride_duration import features as f
from ride_duration import ride_ids, storage
from ride_duration import trips as t
from ride_duration.model import ModelRef
from ride_duration.scoring import OUTPUT_SCHEMA, Predictor, output_table
from ride_duration.settings import RideIdMode

logger = logging.getLogger(__name__)


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


def is_complete(output_uri: str) -> bool:
    """Whether a month's output is complete (outputs appear only once fully written)."""
    return storage.exists(output_uri)


def model_file_stem(model: ModelRef) -> str:
    """The model's run id, or a short hash of its location when no run is known."""
    if model.run_id:
        return model.run_id
    return "model-" + hashlib.sha256(model.resolved_uri.encode()).hexdigest()[:16]


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
) -> MonthResult:
    """Read, clean, identify, predict and write one month; the output appears only if all do."""
    result = MonthResult(
        taxi_type=taxi_type,
        year=year,
        month=month,
        input_uri=storage.display_uri(input_uri),
        output_uri=storage.display_uri(output_uri),
        model=model,
    )
    seconds: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    started = time.perf_counter()
    with storage.open_parquet(input_uri) as parquet:
        fields = f.required_fields(predictor.features)
        columns = t.source_columns(taxi_type, parquet.schema_arrow.names, fields)
        renamed = {source: canonical for canonical, source in columns.items()}
        batches = storage.iter_batches(parquet, list(columns.values()), batch_size, input_uri)
        with storage.AtomicParquetWriter(output_uri, OUTPUT_SCHEMA) as writer:
            clock = time.perf_counter()
            for batch in batches:
                raw = batch.rename_columns([renamed[name] for name in batch.schema.names])
                seconds["read"] += time.perf_counter() - clock

                clock = time.perf_counter()
                prepared = f.prepare_trips(
                    pa.Table.from_batches([raw]), year, month, first_row=result.rows_read
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
                    ids = ride_ids.deterministic_ride_ids(taxi_type, year, month, rows)
                seconds["ride_ids"] += time.perf_counter() - clock

                clock = time.perf_counter()
                predictions = (
                    predictor.predict(trips) if trips.num_rows else np.empty(0, dtype=np.float64)
                )
                seconds["predict"] += time.perf_counter() - clock

                clock = time.perf_counter()
                writer.write(output_table(trips, ids, predictions, model.label))
                result.rows_scored += trips.num_rows
                seconds["write"] += time.perf_counter() - clock
                clock = time.perf_counter()
            clock = time.perf_counter()
        seconds["write"] += time.perf_counter() - clock
    result.rows_dropped = {reason.value: dropped.get(reason.value, 0) for reason in f.DropReason}
    seconds["total"] = time.perf_counter() - started
    result.seconds = {stage: round(value, 3) for stage, value in seconds.items()}
    if result.rows_scored == 0:
        logger.warning("%s: no trip could be scored; the output file is empty", result.label)
    return result


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
        f"| seconds | {result.seconds.get('total', 0):.1f} |",
    ]
    return "\n".join(lines) + "\n"
