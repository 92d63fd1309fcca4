"""Reading a Kinesis stream without Lambda: shard by shard, into the Lambda handler, as Lambda does.

Each shard is read from its checkpoint (the last sequence number done), or from TRIM_HORIZON or
LATEST the first time. Its records go to the handler as a Lambda Kinesis event. When the
handler reports failures (or fails), the shard is read again from the first failed record, as
Lambda's event source mapping retries; after `max_retries` such retries the failed records are
written to the dead-letter file (as an on-failure destination would keep them) and the shard
moves on. The checkpoint is written after every batch (atomically, and synced), so a consumer
stopped at any moment continues where it stopped: a record is scored or kept aside, never lost
(at least once). One consumer at a time holds a checkpoint. The stream's shards are listed
again as shards close, so that after a resharding every child is read, each once its parents
are read to their end.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ride_duration.online.checkpoint import Checkpoint, keep_aside
from ride_duration.online.consumer_metrics import ConsumerMetrics
from ride_duration.online.throttling import (
    Backoff,
    StoppedError,
    episode_line,
    error_code,
    retryable,
)

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class Shard:
    """Where the consumer is in one shard."""

    shard_id: str
    iterator: str | None
    attempts: int = 0  # deliveries of the current first record that were reported failed
    failed_reads: int = 0  # reads in a row that were throttled or found no connection
    not_before: float = 0.0  # when to read again, after such a read


@dataclass
class Tally:
    """What a consumer did with the records it read, each counted once, by its last outcome:
    scored (and checkpointed), or failed, which is dead-lettered once its retries are spent and
    otherwise read again (by this consumer, or the next one on its checkpoint)."""

    scored: int = 0
    dead_lettered: int = 0
    retrying: dict[str, int] = field(default_factory=dict)  # shard -> failed, to be read again

    @property
    def failed(self) -> int:
        return self.dead_lettered + sum(self.retrying.values())

    def summary(self, seconds: float, dead_letter: Path) -> str:
        """One line for the user: records read, scored, failed and dead-lettered, and time."""
        kept = f" (to {dead_letter})" if self.dead_lettered else ""
        return (
            f"read {self.scored + self.failed} records: {self.scored} scored, {self.failed} "
            f"failed, {self.dead_lettered} dead-lettered{kept}; {seconds:.1f} s"
        )


@dataclass(frozen=True)
class Consumer:
    """Reads `stream` with `client` into `handler`, until `stop` is set.

    `client` is boto3's Kinesis client in a `throttling.RetryingKinesis`: its calls outlast
    throttling, each throttled answer counted (by `metrics.on_throttle`, given to it). A
    throttled GetRecords holds up only its shard, read again after a pause of `backoff` while
    the others go on. `metrics` counts the records read, scored, failed and dead-lettered, and
    keeps each shard's MillisBehindLatest.
    """

    client: Any
    stream: str
    handler: Handler
    checkpoint: Checkpoint
    dead_letter: Path
    start: str = "TRIM_HORIZON"
    batch_size: int = 100
    max_retries: int = 2
    idle_seconds: float = 1.0
    stop: threading.Event = field(default_factory=threading.Event)
    clock: Callable[[], float] = time.monotonic
    wait: Callable[[float], object] | None = None  # pauses (default: on `stop`)
    backoff: Backoff = field(default_factory=Backoff)
    tally: Tally = field(default_factory=Tally)
    metrics: ConsumerMetrics = field(default_factory=ConsumerMetrics)

    def run(self, until_idle: bool = False) -> None:
        """Consume until stopped (or, with `until_idle`, until every shard is caught up)."""
        try:
            self._run(until_idle)
        except StoppedError:  # stopped while a Kinesis call waited to be tried again
            return

    def _run(self, until_idle: bool) -> None:
        arn = self.client.describe_stream(StreamName=self.stream)["StreamDescription"]["StreamARN"]
        shards: dict[str, Shard] = {}
        self._follow_shards(shards)
        while not self.stop.is_set():
            busy = False
            for shard in list(shards.values()):
                if self.stop.is_set():
                    break
                busy |= self._step(shard, arn)
            if busy:
                continue
            # Idle: shards may have closed, or been added by a resharding.
            if self._follow_shards(shards):
                continue
            waiting = [s.not_before for s in shards.values() if s.failed_reads]
            if until_idle and not waiting:
                return
            # until the next shard to read again is due, or a while when none is waiting
            pause = min([self.idle_seconds, *(due - self.clock() for due in waiting)])
            (self.wait or self.stop.wait)(max(pause, 0.0))

    def _follow_shards(self, shards: dict[str, Shard]) -> bool:
        """List the stream's shards again: finish those read to their end (Kinesis says their
        last sequence number once they are closed), add those now ready. A shard is read only
        once its parents are finished (or gone from the stream), as Lambda reads a resharded
        stream. Whether anything changed."""
        changed = False
        listed = self._shard_list()
        for description in listed:
            shard = shards.get(description["ShardId"])
            ending = description.get("SequenceNumberRange", {}).get("EndingSequenceNumber")
            done = self.checkpoint.done.get(description["ShardId"])
            if shard and ending and done and int(done) >= int(ending):
                shard.iterator = None  # closed, and read to its last record
        for shard_id in [s for s, shard in shards.items() if shard.iterator is None]:
            self.checkpoint.finish(shard_id)
            self.metrics.finished(shard_id)
            del shards[shard_id]
            changed = True
        present = {s["ShardId"] for s in listed}
        for description in listed:
            shard_id = description["ShardId"]
            if shard_id in shards or shard_id in self.checkpoint.finished:
                continue
            parents = {description.get("ParentShardId"), description.get("AdjacentParentShardId")}
            waiting = {p for p in parents if p and p in present} - self.checkpoint.finished
            if waiting:
                continue
            # A child of a shard this consumer read is read from its start, whatever `start`.
            child = any(p in self.checkpoint.finished for p in parents if p)
            shards[shard_id] = Shard(shard_id, self._iterator(shard_id, from_start=child))
            changed = True
        return changed

    def _shard_list(self) -> list[dict[str, Any]]:
        shards, token = [], None
        while True:
            page = (
                self.client.list_shards(NextToken=token)
                if token
                else self.client.list_shards(StreamName=self.stream)
            )
            shards += page["Shards"]
            token = page.get("NextToken")
            if not token:
                return shards

    def _iterator(self, shard_id: str, at: str | None = None, from_start: bool = False) -> str:
        """A shard's iterator: at a record to retry, after the checkpoint, or from `start`."""
        options: dict[str, str] = {
            "ShardIteratorType": "TRIM_HORIZON" if from_start else self.start
        }
        if at is not None:
            options = {"ShardIteratorType": "AT_SEQUENCE_NUMBER", "StartingSequenceNumber": at}
        elif shard_id in self.checkpoint.done:
            options = {
                "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                "StartingSequenceNumber": self.checkpoint.done[shard_id],
            }
        answer = self.client.get_shard_iterator(StreamName=self.stream, ShardId=shard_id, **options)
        return str(answer["ShardIterator"])

    def _read(self, shard: Shard) -> list[dict[str, Any]] | None:
        """One GetRecords of the shard; None when throttled or expired (to be tried again)."""
        if self.clock() < shard.not_before:
            return None
        try:
            answer = self.client.get_records(ShardIterator=shard.iterator, Limit=self.batch_size)
        except Exception as error:
            if error_code(error) == "ExpiredIteratorException":  # idle too long: renewed
                shard.iterator = self._iterator(shard.shard_id)
                return None
            if retryable(error):
                if not shard.failed_reads:  # one line per episode, not one per try
                    logger.warning("%s", episode_line("GetRecords", shard.shard_id, error))
                shard.not_before = self.clock() + self.backoff.delay(shard.failed_reads)
                shard.failed_reads += 1
                return None
            raise
        shard.failed_reads = 0
        shard.iterator = answer.get("NextShardIterator")
        self.metrics.lag(shard.shard_id, answer.get("MillisBehindLatest"))
        records: list[dict[str, Any]] = answer["Records"]
        return records

    def _step(self, shard: Shard, arn: str) -> bool:
        """One batch of one shard through the handler; whether there was anything to do."""
        if shard.iterator is None:
            return False  # a closed shard, read to its end
        records = self._read(shard)
        if not records:
            return False
        event = {"Records": [lambda_record(r, shard.shard_id, arn) for r in records]}
        sequences = [r["SequenceNumber"] for r in records]
        failed = self._failed(event, sequences)
        reported = sum(1 for sequence in sequences if sequence in failed)
        self.metrics.read.inc(len(records))
        self.metrics.scored.inc(len(records) - reported)
        self.metrics.failed.inc(reported)
        tally = self.tally
        tally.retrying.pop(shard.shard_id, None)  # counted again below if they fail again
        if not failed:
            shard.attempts = 0
            self.checkpoint.advance(shard.shard_id, sequences[-1])
            tally.scored += len(records)
            return True
        first = next(i for i, s in enumerate(sequences) if s in failed)
        if first:  # the records before the first failure are done
            self.checkpoint.advance(shard.shard_id, sequences[first - 1])
            shard.attempts = 0
            tally.scored += first
        shard.attempts += 1
        kept = [r for r in records[first:] if r["SequenceNumber"] in failed]
        if shard.attempts <= self.max_retries:
            shard.iterator = self._iterator(shard.shard_id, at=sequences[first])
            tally.retrying[shard.shard_id] = len(kept)  # the rest from `first` is read again
            return True
        # Retries spent: keep the failed records aside, as Lambda's on-failure destination.
        reason = f"reported failed {self.max_retries + 1} times"
        keep_aside(self.dead_letter, shard.shard_id, kept, reason)
        shard.attempts = 0
        self.checkpoint.advance(shard.shard_id, sequences[-1])
        tally.scored += len(records) - first - len(kept)
        tally.dead_lettered += len(kept)
        self.metrics.dead_lettered.inc(len(kept))
        return True

    def _failed(self, event: dict[str, Any], sequences: list[str]) -> set[str]:
        """The sequence numbers the handler reports failed; all of them when it fails itself
        (as Lambda retries a batch whose function raised)."""
        try:
            answer = self.handler(event)
            return {f["itemIdentifier"] for f in answer["batchItemFailures"]}
        except Exception:
            logger.exception("the handler failed on a batch of %d records", len(sequences))
            return set(sequences)


def lambda_record(record: dict[str, Any], shard_id: str, arn: str) -> dict[str, Any]:
    """A record from GetRecords as Lambda hands it to a function in a Kinesis event."""
    arrival = record.get("ApproximateArrivalTimestamp")
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": record["PartitionKey"],
            "sequenceNumber": record["SequenceNumber"],
            "data": base64.b64encode(record["Data"]).decode(),
            "approximateArrivalTimestamp": (
                arrival.timestamp() if isinstance(arrival, datetime) else arrival
            ),
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{shard_id}:{record['SequenceNumber']}",
        "eventName": "aws:kinesis:record",
        "eventSourceARN": arn,
    }
