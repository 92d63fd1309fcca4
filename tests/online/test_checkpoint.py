"""The stream consumer's checkpoint (`online.checkpoint`): one reader, atomic, recoverable."""

from __future__ import annotations

import json
import logging
import multiprocessing

import pytest

from ride_duration.online.checkpoint import Checkpoint, CheckpointBusyError


def test_what_a_checkpoint_records_is_read_back(tmp_path):
    path = tmp_path / "checkpoint.json"
    with Checkpoint(path) as checkpoint:
        checkpoint.advance("shard-1", "49")
        checkpoint.advance("shard-1", "50")
        checkpoint.finish("shard-0")
    assert json.loads(path.read_text()) == {"shards": {"shard-1": "50"}, "finished": ["shard-0"]}
    with Checkpoint(path) as again:
        assert again.done == {"shard-1": "50"}
        assert again.finished == {"shard-0"}
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_an_earlier_consumers_flat_file_is_read(tmp_path):
    path = tmp_path / "checkpoint.json"
    path.write_text(json.dumps({"shard-1": "7"}))
    with Checkpoint(path) as checkpoint:
        assert checkpoint.done == {"shard-1": "7"}
        assert checkpoint.finished == set()


@pytest.mark.parametrize(
    "content",
    [
        "",
        "{",
        "[]",
        '"text"',
        '{"shards": {"a": 1}, "finished": []}',
        '{"shards": {}}',
        '{"shards": {}, "finished": [3]}',
        "\x00\x01",
    ],
)
def test_a_file_that_does_not_read_is_kept_aside_with_one_line(tmp_path, caplog, content):
    path = tmp_path / "checkpoint.json"
    path.write_text(content)
    with caplog.at_level(logging.WARNING), Checkpoint(path) as checkpoint:
        assert checkpoint.done == {}
        assert checkpoint.finished == set()
    [kept] = tmp_path.glob("checkpoint.json.unreadable-*")
    assert kept.read_text() == content
    [line] = [r.getMessage() for r in caplog.records]
    assert "does not read" in line
    assert kept.name in line


def _hold(path, ready, release) -> None:
    with Checkpoint(path):
        ready.set()
        release.wait(10)


def test_a_second_reader_is_refused_while_the_first_holds_it(tmp_path):
    path = tmp_path / "checkpoint.json"
    ready, release = multiprocessing.Event(), multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold, args=(path, ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        with pytest.raises(CheckpointBusyError, match=f"pid {holder.pid}"), Checkpoint(path):
            pass
    finally:
        release.set()
        holder.join(10)
    with Checkpoint(path):  # free again once the first has gone
        pass
