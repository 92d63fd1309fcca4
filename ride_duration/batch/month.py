"""Scoring one month in batch: stream the trip file, score each batch, publish the set once.

Memory is bounded by the batch size (plus the parquet row group being decoded): the month is
never held whole, and readers see nothing of it until every batch is written and the month
passed its checks; then its sink publishes it, manifest and all, in one switch.
"""

from __future__ import annotations

import _thread
import logging
import os
import signal
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace

import numpy as np
import pyarrow as pa

from ride_duration.batch import history, manifest, quality
from ride_duration.batch.output import output_table
from ride_duration.batch.result import MonthResult
from ride_duration.batch.sink import Claim, MonthSink, StagedSet
from ride_duration.core import storage, uris
from ride_duration.core.errors import QualityError
from ride_duration.core.months import Month
from ride_duration.core.settings import RideIdMode, Settings
from ride_duration.data import features, ride_ids, sources
from ride_duration.model.distinct import PredictionCache
from ride_duration.model.resolve import ModelRef
from ride_duration.model.runtimes.base import Predictor
from ride_duration.monitoring import drift
from ride_duration.monitoring.columns import profiled_columns
from ride_duration.monitoring.profile import Profile

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
    reference: Profile | None = None,
    flow_run_id: str | None = None,
    timings: dict[str, float] | None = None,
) -> MonthResult:
    """Read, clean, identify, predict and publish one month, with its manifest.

    The input and its columns are checked before the output is touched; then the month is
    claimed, streamed into a staged set, checked against the settings' limits, and only then
    published. Any failure publishes nothing. `reference` is the model's reference profile,
    which the month's drift is measured from (None: the model has none). `timings` (seconds
    spent before, such as the model's load) go into the result's and the manifest's seconds.
    The month's row of the monitoring table is written once it is published, or refused.
    """
    result = MonthResult(
        taxi_type=taxi_type,
        month=month,
        input_uri=uris.display_uri(input_uri),
        output_uri=uris.display_uri(sink.current_uri),
        model=model,
        manifest_uri=uris.display_uri(sink.manifest_uri),
        scoring_path=predictor.path,
        reference=reference,
    )
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    input_info: storage.FileInfo | dict[str, object]
    try:
        input_info = storage.file_info(input_uri)
    except FileNotFoundError:
        input_info = {}  # reading it below fails with the clear "no trip file" error
    fields = features.required_fields(predictor.features)
    # The input and its columns are checked (opening it) before the month is claimed.
    with (
        _signals_kept() as raise_swallowed_signal,
        sources.open_trips(input_uri, taxi_type, fields, settings.batch_size) as (columns, batches),
        sink.claim(flow_run_id or "cli", result.label) as claim,
    ):
        # Nothing exists of a staged set until its first write, inside the block that
        # discards it on any exception (a signal's too) up to its publish.
        staged = sink.stage(result.model)
        try:
            streamed = _stream(result, batches, columns, staged, predictor, settings.ride_id_mode)
            streamed.check(result, settings, claim, sink)
            result.seconds = {**(timings or {}), **streamed.stages.rounded()}
            result.seconds["total"] = round(time.perf_counter() - started, 3)
            content = manifest.build(
                result,
                input_info=input_info,
                version_uri=staged.uri,
                flow_run_id=flow_run_id,
                started_at=started_at,
                code_version=settings.code_version,
            )
            raise_swallowed_signal()  # the last moment before anything is published
        except BaseException:
            staged.discard()
            raise
        with streamed.stages.timing("publish"):
            sink.publish(staged, content)
        result.seconds["publish"] = round(streamed.stages.seconds["publish"], 3)
        sink.record(history.month_row(result, "published"))
    if result.rows_scored == 0:
        logger.warning("%s: no trip could be scored; the output file is empty", result.label)
    return result


@contextmanager
def _signals_kept() -> Iterator[Callable[[], None]]:
    """While inside, no SIGTERM or SIGINT is lost; the yielded check raises one that was.

    Python runs a signal's handler in the main thread between any two bytecodes, also inside
    a finalizer the main thread happens to run (a garbage-collected asyncio transport of
    s3fs's, say). There the handler's exception (Prefect's TerminationSignal in a flow,
    KeyboardInterrupt) is reported as "Exception ignored in ..." and dropped, and the run went
    on to publish and exit 0. Such a signal is delivered again a moment later, from another
    thread, so that its handler runs where its exception propagates; the check raises it at
    once if it has not been delivered again yet (called before publishing).
    """
    lock = threading.Lock()
    state = SimpleNamespace(error=None, sent=False, cancelled=False)
    previous = sys.unraisablehook

    def deliver_again(number: int) -> None:
        time.sleep(0.001)  # the hook below has returned by then: not raised inside it
        with lock:
            if state.cancelled:
                return
            state.sent = True
        os.kill(os.getpid(), number)

    def hook(unraisable: sys.UnraisableHookArgs) -> None:
        error = unraisable.exc_value
        number = _signal_of(error)
        if number is None:
            previous(unraisable)
            return
        logger.debug("signal %d came inside %r: delivered again", number, unraisable.object)
        with lock:
            if state.error is not None and not state.sent:
                return  # delivered again already
            state.error, state.sent, state.cancelled = error, False, False
        # Not threading.Thread: its start() waits, and the signal could come inside the wait.
        _thread.start_new_thread(deliver_again, (number,))

    def raise_swallowed() -> None:
        while True:
            with lock:
                if state.error is None:
                    return
                if not state.sent:
                    state.cancelled = True
                    error, state.error = state.error, None
                    raise error
            time.sleep(0.05)  # sent: its handler raises here, or the hook is called again

    sys.unraisablehook = hook
    try:
        yield raise_swallowed
    finally:
        sys.unraisablehook = previous


def _signal_of(error: BaseException | None) -> int | None:
    """The signal whose handler raised `error` (Prefect's TerminationSignal carries it), None
    when `error` is no signal's."""
    if isinstance(error, KeyboardInterrupt):
        return signal.SIGINT
    number = getattr(error, "signal", None)
    if isinstance(error, Exception) or not isinstance(number, int):
        return None
    return number


@dataclass
class Stages:
    """Seconds spent in each stage of a month: read, prepare, ride_ids, predict, write."""

    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))

    @contextmanager
    def timing(self, stage: str) -> Iterator[None]:
        """Count the block's time to `stage`."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - started

    def reading(self, batches: Iterable[pa.Table]) -> Iterator[pa.Table]:
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
    profile: Profile | None  # the month's, in its model's reference bins (None: no reference)

    def check(self, result: MonthResult, settings: Settings, claim: Claim, sink: MonthSink) -> None:
        """Record the month's drops, metrics and drift, then fail it (nothing published) if a
        limit is crossed (its row of the monitoring table says why) or its claim was taken
        over."""
        result.rows_dropped = {r.value: self.dropped.get(r.value, 0) for r in features.DropReason}
        result.metrics = self.totals.metrics()
        result.profile = self.profile
        if result.reference is not None and self.profile is not None:
            result.drift = drift.compare(result.reference, self.profile)
        claim.check()  # a run whose claim was taken over publishes nothing, records nothing
        try:
            quality.check(
                result.label,
                result.rows_read,
                result.rows_dropped,
                result.metrics,
                settings.limits,
                result.drift,
            )
        except QualityError as refused:
            sink.record(history.month_row(result, "refused", str(refused)))
            raise


def _stream(
    result: MonthResult,
    batches: Iterable[pa.Table],
    columns: dict[str, str],
    staged: StagedSet,
    predictor: Predictor,
    ride_id_mode: RideIdMode,
) -> Streamed:
    """Batches in, predictions out into a staged set, published later only if all is well (the
    caller discards the set on failure)."""
    profile = result.reference.same_bins() if result.reference else None
    streamed = Streamed(staged, Stages(), Counter(), quality.Totals(), profile)
    stages, cache = streamed.stages, PredictionCache()
    for raw in stages.reading(batches):
        with stages.timing("prepare"):
            prepared = features.prepare_trips(
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
        if profile is not None:
            with stages.timing("profile"):
                profile.add(
                    profiled_columns(trips, values), raw.num_rows, sum(prepared.dropped.values())
                )
        result.rows_scored += trips.num_rows
    return streamed


def _ride_ids(result: MonthResult, trips: pa.Table, mode: RideIdMode) -> pa.Array:
    if mode == "random":
        return ride_ids.random_ride_ids(trips.num_rows)
    rows = trips[features.ROW_NUMBER].to_numpy()
    return ride_ids.deterministic_ride_ids(result.taxi_type, result.month, rows)


def _predict(
    predictor: Predictor, trips: pa.Table, cache: PredictionCache
) -> tuple[np.ndarray, int | None]:
    """The batch's predictions and its count of trips with an unseen pair."""
    if not trips.num_rows:
        return np.empty(0, dtype=np.float64), 0
    predictions = predictor.predict_batch(trips, cache)
    return predictions.values, predictions.unknown_pairs
