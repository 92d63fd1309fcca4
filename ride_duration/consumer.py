"""Reading a Kinesis stream without Lambda: shard by shard, into the Lambda handler, as Lambda does.

Each shard is read from its checkpoint (the last sequence number done), or from TRIM_HORIZON or
LATEST the first time. Its records go to the handler as a Lambda Kinesis event. When the
handler reports failures, the shard is read again from the first failed record, as Lambda's
event source mapping retries; after `max_retries` such retries the failed records are written
to the dead-letter file (as an on-failure destination would keep them) and the shard moves on.
The checkpoint is written after every batch (atomically), so a consumer stopped at any moment
continues where it stopped: a record is scored or reported, never lost (at least once).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

Handler = Callable[[dict], dict]


class Checkpoint:
    """The last sequence number done per shard, in a small JSON file written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}

    def advance(self, shard_id: str, sequence_number: str) -> None:
        self.done[shard_id] = sequence_number
        staging = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        staging.write_text(json.dumps(self.done, indent=2, sort_keys=True))
        staging.replace(self.path)  # a crash leaves the old checkpoint or the new, whole


@dataclass
class Shard:
    """Where the consumer is in one shard."""

    shard_id: str
    iterator: str | None
    attempts: int = 0  # deliveries of the current first record that were reported failed


@dataclass(frozen=True)
class Consumer:
    """Reads `stream` with `client` (boto3 Kinesis) into `handler`, until `stop` is set."""

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

    def run(self, until_idle: bool = False) -> None:
        """Consume until stopped (or, with `until_idle`, until every shard is caught up)."""
        description = self.client.describe_stream(StreamName=self.stream)["StreamDescription"]
        arn = description["StreamARN"]
        shards = [Shard(s["ShardId"], self._iterator(s["ShardId"])) for s in self._shard_list()]
        while not self.stop.is_set():
            busy = False
            for shard in shards:
                if self.stop.is_set():
                    break
                busy |= self._step(shard, arn)
            if not busy:
                if until_idle:
                    return
                self.stop.wait(self.idle_seconds)

    def _shard_list(self) -> list[dict]:
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

    def _iterator(self, shard_id: str, at: str | None = None) -> str:
        """A shard's iterator: at a record to retry, after the checkpoint, or from `start`."""
        options: dict[str, str] = {"ShardIteratorType": self.start}
        if at is not None:
            options = {"ShardIteratorType": "AT_SEQUENCE_NUMBER", "StartingSequenceNumber": at}
        elif shard_id in self.checkpoint.done:
            options = {
                "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                "StartingSequenceNumber": self.checkpoint.done[shard_id],
            }
        return self.client.get_shard_iterator(StreamName=self.stream, ShardId=shard_id, **options)[
            "ShardIterator"
        ]

    def _step(self, shard: Shard, arn: str) -> bool:
        """One batch of one shard through the handler; whether there was anything to do."""
        if shard.iterator is None:
            return False  # a closed shard, read to its end
        answer = self.client.get_records(ShardIterator=shard.iterator, Limit=self.batch_size)
        shard.iterator = answer.get("NextShardIterator")
        records = answer["Records"]
        if not records:
            return False
        event = {"Records": [lambda_record(r, shard.shard_id, arn) for r in records]}
        failed = {f["itemIdentifier"] for f in self.handler(event)["batchItemFailures"]}
        sequences = [r["SequenceNumber"] for r in records]
        if not failed:
            shard.attempts = 0
            self.checkpoint.advance(shard.shard_id, sequences[-1])
            return True
        first = next(i for i, s in enumerate(sequences) if s in failed)
        if first:  # the records before the first failure are done
            self.checkpoint.advance(shard.shard_id, sequences[first - 1])
            shard.attempts = 0
        shard.attempts += 1
        if shard.attempts <= self.max_retries:
            shard.iterator = self._iterator(shard.shard_id, at=sequences[first])
            return True
        # Retries spent: keep the failed records aside, as Lambda's on-failure destination.
        kept = [r for r in records[first:] if r["SequenceNumber"] in failed]
        self._keep_aside(shard.shard_id, kept)
        shard.attempts = 0
        self.checkpoint.advance(shard.shard_id, sequences[-1])
        return True

    def _keep_aside(self, shard_id: str, records: list[dict]) -> None:
        with self.dead_letter.open("a") as out:
            for record in records:
                out.write(
                    json.dumps(
                        {
                            "shard_id": shard_id,
                            "sequence_number": record["SequenceNumber"],
                            "partition_key": record["PartitionKey"],
                            "data": base64.b64encode(record["Data"]).decode(),
                            "reason": f"reported failed {self.max_retries + 1} times",
                        }
                    )
                    + "\n"
                )
        logger.warning("%d records of %s kept in %s", len(records), shard_id, self.dead_letter)


def lambda_record(record: dict, shard_id: str, arn: str) -> dict:
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
