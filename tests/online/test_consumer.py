"""The local consumer (`ride_duration.online.consumer`) against an in-memory Kinesis: checkpoints,
retries, the dead letter, throttling, resharding and a second consumer."""

from __future__ import annotations

import base64
import json
import logging
import threading
from pathlib import Path

import pytest

from ride_duration.online.checkpoint import Checkpoint, CheckpointBusyError
from ride_duration.online.consumer import Consumer, Tally


class KinesisError(Exception):
    """What botocore raises for an error answer: the code is in `response`."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.response = {"Error": {"Code": code}}


class FakeKinesis:
    """One stream in memory: shards (with parents), records, and failures on demand."""

    def __init__(self, ends_iterators: bool = True) -> None:
        self.shards: dict[str, dict] = {}
        self.sequence = 0
        # Kinesis ends a closed shard's iterators at its last record and lists its last sequence
        # number; moto's server only lists it.
        self.ends_iterators = ends_iterators
        self.failures: list[str] = []  # error codes the next get_records calls raise
        self.lag: dict[str, int] = {}  # shard -> the MillisBehindLatest its reads answer
        self.written: list[bytes] = []  # what put_records took

    def add_shard(self, shard_id: str, parent: str | None = None, adjacent: str | None = None):
        self.shards[shard_id] = {"records": [], "parent": parent, "adjacent": adjacent}

    def put(self, shard_id: str, key: str) -> str:
        self.sequence += 1
        number = f"{self.sequence:056d}"
        self.shards[shard_id]["records"].append(
            {"SequenceNumber": number, "PartitionKey": key, "Data": key.encode()}
        )
        return number

    def close(self, shard_id: str) -> None:
        self.shards[shard_id]["closed"] = True

    def describe_stream(self, StreamName: str) -> dict:
        return {"StreamDescription": {"StreamARN": f"arn:aws:kinesis:local:0:stream/{StreamName}"}}

    def list_shards(self, StreamName: str | None = None, NextToken: str | None = None) -> dict:
        shards = [
            {
                "ShardId": shard_id,
                **({"ParentShardId": s["parent"]} if s["parent"] else {}),
                **({"AdjacentParentShardId": s["adjacent"]} if s["adjacent"] else {}),
                "SequenceNumberRange": {
                    "StartingSequenceNumber": "0",
                    **(
                        {"EndingSequenceNumber": s["records"][-1]["SequenceNumber"]}
                        if s.get("closed") and s["records"]
                        else {}
                    ),
                },
            }
            for shard_id, s in self.shards.items()
        ]
        start = int(NextToken or 0)  # pages of one shard, as a long listing comes
        page = {"Shards": shards[start : start + 1]}
        if start + 1 < len(shards):
            page["NextToken"] = str(start + 1)
        return page

    def get_shard_iterator(self, StreamName: str, ShardId: str, ShardIteratorType: str, **at):
        records = self.shards[ShardId]["records"]
        numbers = [r["SequenceNumber"] for r in records]
        position = {
            "TRIM_HORIZON": 0,
            "LATEST": len(records),
            "AT_SEQUENCE_NUMBER": lambda: numbers.index(at["StartingSequenceNumber"]),
            "AFTER_SEQUENCE_NUMBER": lambda: numbers.index(at["StartingSequenceNumber"]) + 1,
        }[ShardIteratorType]
        return {"ShardIterator": f"{ShardId}|{position() if callable(position) else position}"}

    def get_records(self, ShardIterator: str, Limit: int) -> dict:
        if self.failures:
            raise KinesisError(self.failures.pop(0))
        shard_id, position = ShardIterator.split("|")
        shard = self.shards[shard_id]
        records = shard["records"][int(position) : int(position) + Limit]
        end = int(position) + len(records)
        done = self.ends_iterators and shard.get("closed") and end == len(shard["records"])
        return {
            "Records": records,
            "NextShardIterator": None if done else f"{shard_id}|{end}",
            **({"MillisBehindLatest": self.lag[shard_id]} if shard_id in self.lag else {}),
        }

    def put_records(self, StreamName: str, Records: list[dict]) -> dict:
        self.written += [record["Data"] for record in Records]
        return {"FailedRecordCount": 0, "Records": [{"SequenceNumber": "1"} for _ in Records]}


class Handler:
    """A Lambda handler that records what it saw and fails the keys it is told to."""

    def __init__(self, fail: dict[str, int] | None = None, raises: int = 0) -> None:
        self.seen: list[str] = []
        self.fail = dict(fail or {})  # key -> times to report it failed
        self.raises = raises

    def __call__(self, event: dict) -> dict:
        if self.raises:
            self.raises -= 1
            raise RuntimeError("the model is not loaded")
        failures = []
        for record in event["Records"]:
            key = base64.b64decode(record["kinesis"]["data"]).decode()
            if self.fail.get(key, 0) > 0:
                self.fail[key] -= 1
                failures.append({"itemIdentifier": record["kinesis"]["sequenceNumber"]})
            else:
                self.seen.append(key)
        return {"batchItemFailures": failures}


def consume(kinesis, handler, tmp_path: Path, **options) -> Checkpoint:
    with Checkpoint(tmp_path / "checkpoint.json") as checkpoint:
        Consumer(
            client=kinesis,
            stream="ride_events",
            handler=handler,
            checkpoint=checkpoint,
            dead_letter=tmp_path / "dead-letter.jsonl",
            batch_size=options.pop("batch_size", 3),
            idle_seconds=0,
            **options,
        ).run(until_idle=True)
    return checkpoint


def dead_letters(tmp_path: Path) -> list[str]:
    path = tmp_path / "dead-letter.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line)["partition_key"] for line in lines]


def ten_rides() -> FakeKinesis:
    """Ten records, ride-0 to ride-9, on two shards by turns."""
    stream = FakeKinesis()
    for shard in ("shard-0", "shard-1"):
        stream.add_shard(shard)
    for i in range(10):
        stream.put(f"shard-{i % 2}", f"ride-{i}")
    return stream


@pytest.fixture
def kinesis() -> FakeKinesis:
    return ten_rides()


def test_every_record_of_every_shard_is_handled_once_and_checkpointed(kinesis, tmp_path):
    handler = Handler()
    checkpoint = consume(kinesis, handler, tmp_path)
    assert sorted(handler.seen) == sorted(f"ride-{i}" for i in range(10))
    saved = json.loads((tmp_path / "checkpoint.json").read_text())
    assert saved["shards"] == checkpoint.done
    assert set(saved["shards"]) == {"shard-0", "shard-1"}


def test_a_restarted_consumer_continues_after_its_checkpoint(kinesis, tmp_path):
    consume(kinesis, Handler(), tmp_path)
    kinesis.put("shard-0", "ride-new")
    handler = Handler()
    consume(kinesis, handler, tmp_path)
    assert handler.seen == ["ride-new"]


@pytest.mark.parametrize(
    ("fail", "raises", "kept", "scored"),
    [
        ({"ride-4": 1}, 0, [], 10),  # failed once, then scored on the retry
        ({"ride-4": 99}, 0, ["ride-4"], 9),  # a poison record: kept aside, the shard moves on
        ({}, 99, [f"ride-{i}" for i in range(10)], 0),  # a handler that fails: all kept
    ],
)
def test_failed_records_are_retried_then_kept_aside_and_the_shard_moves_on(
    kinesis, tmp_path, fail, raises, kept, scored
):
    handler = Handler(fail, raises)
    tally = Tally()
    consume(kinesis, handler, tmp_path, max_retries=2, tally=tally)
    assert sorted(dead_letters(tmp_path)) == sorted(kept)
    assert set(handler.seen) == {f"ride-{i}" for i in range(10)} - set(kept)  # at least once
    # each record counted once, by its last outcome, however often it was read
    assert (tally.scored, tally.failed, tally.dead_lettered) == (scored, len(kept), len(kept))


def test_a_record_still_failing_when_the_consumer_stops_counts_as_failed(kinesis, tmp_path):
    tally = Tally()
    stop = threading.Event()
    handler = Handler({"ride-0": 99})

    def stopping(event: dict) -> dict:
        answer = handler(event)
        if answer["batchItemFailures"]:
            stop.set()  # SIGTERM while the record waits for its retry
        return answer

    consume(kinesis, stopping, tmp_path, max_retries=2, tally=tally, stop=stop)
    assert tally.failed == 1
    assert tally.dead_lettered == 0
    assert dead_letters(tmp_path) == []


@pytest.mark.parametrize(
    ("tally", "line"),
    [
        (Tally(), "read 0 records: 0 scored, 0 failed, 0 dead-lettered; 1.2 s"),
        (
            Tally(scored=7, dead_lettered=2, retrying={"shard-0": 1}),
            "read 10 records: 7 scored, 3 failed, 2 dead-lettered (to dead.jsonl); 1.2 s",
        ),
    ],
)
def test_the_summary_says_what_was_read_scored_failed_and_kept(tally, line):
    assert tally.summary(1.23, Path("dead.jsonl")) == line


@pytest.mark.parametrize(
    "codes",
    [
        ["ProvisionedThroughputExceededException"] * 3,
        ["LimitExceededException"],
        ["ExpiredIteratorException"],
    ],
)
def test_a_throttled_or_expired_read_is_tried_again_and_nothing_is_lost(
    kinesis, tmp_path, codes, caplog
):
    kinesis.failures = list(codes)
    handler = Handler()
    with caplog.at_level(logging.WARNING):
        consume(kinesis, handler, tmp_path)
    assert sorted(handler.seen) == sorted(f"ride-{i}" for i in range(10))


def test_an_error_that_no_wait_mends_stops_the_consumer(kinesis, tmp_path):
    kinesis.failures = ["AccessDeniedException"]
    with pytest.raises(KinesisError):
        consume(kinesis, Handler(), tmp_path)


@pytest.mark.parametrize(
    "content",
    ["", "{", "[1, 2]", '{"shards": {"shard-0": 7}, "finished": []}', '"text"', "\0\0\0"],
)
def test_a_checkpoint_that_does_not_read_is_kept_aside_and_the_shards_start_again(
    kinesis, tmp_path, content, caplog
):
    (tmp_path / "checkpoint.json").write_text(content)
    handler = Handler()
    with caplog.at_level(logging.WARNING):
        consume(kinesis, handler, tmp_path)
    assert sorted(handler.seen) == sorted(f"ride-{i}" for i in range(10))
    [line] = [r.getMessage() for r in caplog.records if "does not read" in r.getMessage()]
    assert "checkpoint.json" in line
    assert "kept as" in line
    assert [p.read_text() for p in tmp_path.glob("checkpoint.json.unreadable-*")] == [content]


def test_an_earlier_consumers_checkpoint_is_read(kinesis, tmp_path):
    first = kinesis.shards["shard-0"]["records"][-1]["SequenceNumber"]
    (tmp_path / "checkpoint.json").write_text(json.dumps({"shard-0": first}))
    handler = Handler()
    consume(kinesis, handler, tmp_path)
    assert sorted(handler.seen) == [f"ride-{i}" for i in (1, 3, 5, 7, 9)]


def test_a_second_consumer_on_the_same_checkpoint_is_refused(tmp_path):
    with (
        Checkpoint(tmp_path / "checkpoint.json"),
        pytest.raises(CheckpointBusyError) as refused,
        Checkpoint(tmp_path / "checkpoint.json"),
    ):
        pass
    assert "another consumer" in str(refused.value)
    assert "STREAM_CHECKPOINT" in str(refused.value)
    with Checkpoint(tmp_path / "checkpoint.json"):  # free again once the first has stopped
        pass


def resharded(ends_iterators: bool = True) -> FakeKinesis:
    """Two shards with records, the first split in two, the second merged with a child."""
    stream = FakeKinesis(ends_iterators)
    stream.add_shard("parent-a")
    stream.add_shard("parent-b")
    for i in range(5):
        stream.put("parent-a", f"a-{i}")
        stream.put("parent-b", f"b-{i}")
    stream.close("parent-a")
    stream.close("parent-b")
    stream.add_shard("split-1", parent="parent-a")  # parent-a split in two
    stream.add_shard("split-2", parent="parent-a")
    stream.add_shard("merged", parent="parent-b", adjacent="split-2")  # then merged
    for shard in ("split-1", "split-2", "merged"):
        stream.put(shard, f"{shard}-0")
    stream.close("split-2")
    return stream


@pytest.mark.parametrize("ends_iterators", [True, False], ids=["kinesis", "moto"])
def test_after_a_resharding_children_are_read_once_their_parents_are_done(tmp_path, ends_iterators):
    handler = Handler()
    checkpoint = consume(resharded(ends_iterators), handler, tmp_path)
    seen = handler.seen
    assert sorted(seen) == sorted(
        [f"a-{i}" for i in range(5)]
        + [f"b-{i}" for i in range(5)]
        + ["split-1-0", "split-2-0", "merged-0"]
    )
    assert seen.index("split-1-0") > seen.index("a-4")  # each parent before its children
    assert seen.index("merged-0") > max(seen.index("b-4"), seen.index("split-2-0"))
    assert checkpoint.finished == {"parent-a", "parent-b", "split-2"}


def test_children_of_a_shard_read_to_its_end_are_read_from_their_start(tmp_path):
    """With STREAM_START=LATEST the first shards start at their end, but nothing written
    after that is skipped: children of finished parents are read from their first record."""
    handler = Handler()
    consume(resharded(), handler, tmp_path, start="LATEST")
    assert sorted(handler.seen) == ["merged-0", "split-1-0", "split-2-0"]
