"""The stream scorer for real: Kinesis on the session's moto server (two shards in, one out),
the handler run by awslambdaric against a Lambda Runtime API of the tests' own, and the local
consumer as a process that is killed mid-stream and started again.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from ride_duration.online.consumer import lambda_record
from tests.conftest import REPO
from tests.integration.conftest import (
    LINEAR_MODEL,
    REFRESHED,
    RIDE,
    Install,
    Refreshable,
    Services,
    Trained,
    move_alias,
)
from tests.support.docs import lambda_recipe
from tests.support.lambda_runtime import LambdaRuntime, run_function
from tests.support.rides import as_rides, prepared
from tests.support.servers import RefusingKinesis, free_port, refused_url, stop, wait_for

REFRESHED_URI = f"models:/{REFRESHED}@production"
COURSE = {"PULocationID": 130, "DOLocationID": 205, "trip_distance": 3.66}
BAD = {
    "not json": b"{ride: 1",
    "nested 10,000 deep": b'{"ride": ' * 10_000,
    "a distance beyond float32": json.dumps(
        {"ride": {**COURSE, "trip_distance": 1e39}, "ride_id": "bad-3"}
    ).encode(),
    "a NaN location": b'{"ride": {"PULocationID": NaN, "DOLocationID": 1, "trip_distance": 1},'
    b' "ride_id": "bad-4"}',
    "an empty ride id": json.dumps({"ride": COURSE, "ride_id": ""}).encode(),
    "a ride id over 256 characters": json.dumps({"ride": COURSE, "ride_id": "r" * 300}).encode(),
    "a ride id of 301 digits": json.dumps({"ride": COURSE, "ride_id": 1e300}).encode(),
    "a ride that is text": json.dumps({"ride": "x" * 100_000, "ride_id": "bad-5"}).encode(),
    "missing field": json.dumps(
        {"ride": {"DOLocationID": 205, "trip_distance": 3.66}, "ride_id": "bad-1"}
    ).encode(),
    "negative distance": json.dumps(
        {
            "ride": {"PULocationID": 130, "DOLocationID": 205, "trip_distance": -2.0},
            "ride_id": "bad-2",
        }
    ).encode(),
}


@dataclass(frozen=True)
class Streams:
    """A test's input and output streams, and the install its function and consumer run from."""

    client: object
    input: str
    output: str
    arn: str
    install: Install


@pytest.fixture
def streams(services: Services, trained: Trained, install: Install) -> Iterator[Streams]:
    client = boto3.client("kinesis", endpoint_url=services.s3_endpoint, region_name="us-east-1")
    name = f"ride_events-{uuid.uuid4().hex[:8]}"
    output = f"ride_predictions-{uuid.uuid4().hex[:8]}"
    client.create_stream(StreamName=name, ShardCount=2)
    client.create_stream(StreamName=output, ShardCount=1)
    for stream in (name, output):
        client.get_waiter("stream_exists").wait(StreamName=stream)
    arn = client.describe_stream(StreamName=name)["StreamDescription"]["StreamARN"]
    try:
        yield Streams(client, name, output, arn, install)
    finally:
        for stream in (name, output):
            client.delete_stream(StreamName=stream)


def put(streams: Streams, entries: list[tuple[str, bytes]]) -> None:
    for start in range(0, len(entries), 500):
        chunk = entries[start : start + 500]
        answer = streams.client.put_records(
            StreamName=streams.input,
            Records=[{"PartitionKey": key, "Data": data} for key, data in chunk],
        )
        assert answer["FailedRecordCount"] == 0


def shard_records(client, stream: str) -> Iterator[tuple[str, dict]]:
    """Every record of every shard of `stream`, from the start, with its shard's id."""
    for shard in client.list_shards(StreamName=stream)["Shards"]:
        iterator = client.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = client.get_records(ShardIterator=iterator, Limit=1000)
            for record in page["Records"]:
                yield shard["ShardId"], record
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")


def read_all(client, stream: str) -> list[dict]:
    """Every record of every shard of `stream`, from the start."""
    return [record for _, record in shard_records(client, stream)]


def lambda_event(streams: Streams) -> dict:
    """The input stream's records as Lambda's event source mapping hands them over."""
    records = shard_records(streams.client, streams.input)
    return {"Records": [lambda_record(r, shard, streams.arn) for shard, r in records]}


def good_rides(count: int) -> list[tuple[str, dict]]:
    rides = as_rides(prepared(2021, 3, count * 2).slice(0, count))
    return [(f"ride-{i}", ride) for i, ride in enumerate(rides)]


def encoded(ride_id: str, ride: dict) -> bytes:
    return json.dumps({"ride": ride, "ride_id": ride_id}).encode()


def function_env(services: Services, streams: Streams, **extra: str) -> dict[str, str]:
    return {
        **streams.install.env(services.env),
        "MODEL_URI": "models:/ride-duration@production",
        "PREDICTIONS_STREAM_NAME": streams.output,
        **extra,
    }


def invoke(streams: Streams, env: dict[str, str], log: Path, *events: dict) -> list:
    """Each event through `lambda_function.lambda_handler`, as AWS runs it (awslambdaric), in
    one warm execution environment of the streams' install."""
    python = streams.install.python
    with (
        LambdaRuntime() as runtime,
        run_function(
            runtime, "lambda_function.lambda_handler", cwd=REPO, log=log, env=env, python=python
        ),
    ):
        return [runtime.invoke(event, timeout=120) for event in events]


def predictions_by_ride(client, stream: str) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for record in read_all(client, stream):
        body = json.loads(record["Data"])
        assert record["PartitionKey"] == str(body["prediction"]["ride_id"])
        found.setdefault(body["prediction"]["ride_id"], []).append(body)
    return found


def test_the_lambda_scores_good_records_and_reports_exactly_the_bad_ones(
    services: Services, trained: Trained, streams: Streams, tmp_path: Path, batch_path
):
    rides = good_rides(40)
    entries = [(key, encoded(key, ride)) for key, ride in rides]
    entries[10:10] = [(f"bad-{name}", data) for name, data in BAD.items()]
    put(streams, entries)
    event = lambda_event(streams)
    bad_sequences = {
        r["kinesis"]["sequenceNumber"]
        for r in event["Records"]
        if r["kinesis"]["partitionKey"].startswith("bad-")
    }
    assert len(bad_sequences) == len(BAD)

    # Lambda delivers at least once: the same event twice.
    env = function_env(services, streams)
    first, second = invoke(streams, env, tmp_path / "function.log", event, event)
    assert first.error is None, first.error
    assert {i["itemIdentifier"] for i in first.response["batchItemFailures"]} == bad_sequences
    assert second.response == first.response

    found = predictions_by_ride(streams.client, streams.output)
    assert set(found) == {key for key, _ in rides}
    expected = dict(zip([k for k, _ in rides], batch_path([r for _, r in rides]), strict=True))
    for key, copies in found.items():
        assert len(copies) == 2
        assert copies[0] == copies[1]  # the same ride and version: the same record
        assert copies[0]["model"] == "ride_duration_prediction_model"
        assert copies[0]["version"] == f"ride-duration/{trained.version}"
        assert copies[0]["run_id"] == trained.run_id
        # batch's value bit for bit, rounded to two decimals as the online modes answer
        assert copies[0]["prediction"]["ride_duration"] == round(float(expected[key]), 2)
    log = (tmp_path / "function.log").read_text()
    for reason in ("not base64 JSON", "PULocationID is missing", "trip_distance must be"):
        assert reason in log


def test_the_lambda_scores_with_a_compiled_linear_model_as_scikit_learn_does(
    services: Services, trained_linear: Trained, streams: Streams, tmp_path: Path, linear_sklearn
):
    """From the serving install too: the linear baseline's compiled form, scikit-learn's bits."""
    rides = good_rides(40)
    put(streams, [(key, encoded(key, ride)) for key, ride in rides])
    env = function_env(services, streams, MODEL_URI=f"models:/{LINEAR_MODEL}@production")
    [result] = invoke(streams, env, tmp_path / "function.log", lambda_event(streams))
    assert result.error is None, result.error
    assert result.response["batchItemFailures"] == []
    found = predictions_by_ride(streams.client, streams.output)
    expected = dict(zip([k for k, _ in rides], linear_sklearn([r for _, r in rides]), strict=True))
    assert set(found) == set(expected)
    for key, [record] in found.items():
        assert record["version"] == f"{LINEAR_MODEL}/{trained_linear.version}"
        assert record["prediction"]["ride_duration"] == round(float(expected[key]), 2)


def test_refused_writes_are_retried_and_still_refused_ones_reported(
    services: Services, streams: Streams, tmp_path: Path
):
    rides = good_rides(12)
    put(streams, [(key, encoded(key, ride)) for key, ride in rides])
    event = lambda_event(streams)
    proxy = RefusingKinesis(services.s3_endpoint)
    proxy.refuse("ride-3", 2)  # throttled twice, then written
    proxy.refuse("ride-7", 99)  # never written
    try:
        env = function_env(services, streams, KINESIS_ENDPOINT_URL=proxy.endpoint)
        [result] = invoke(streams, env, tmp_path / "function.log", event)
    finally:
        proxy.close()
    answer = result.response
    sequence_of = {
        r["kinesis"]["partitionKey"]: r["kinesis"]["sequenceNumber"] for r in event["Records"]
    }
    assert answer == {"batchItemFailures": [{"itemIdentifier": sequence_of["ride-7"]}]}
    assert proxy.refused.count("ride-3") == 2
    assert proxy.refused.count("ride-7") == 4  # the first try and PUT_RETRIES (3) retries
    found = predictions_by_ride(streams.client, streams.output)
    assert set(found) == {key for key, _ in rides} - {"ride-7"}


def test_a_test_run_answers_the_predictions_and_writes_nothing(
    services: Services, streams: Streams, tmp_path: Path
):
    rides = good_rides(3)
    put(streams, [(key, encoded(key, ride)) for key, ride in rides])
    env = function_env(services, streams, TEST_RUN="True")
    [result] = invoke(streams, env, tmp_path / "function.log", lambda_event(streams))
    answer = result.response
    assert answer["batchItemFailures"] == []
    assert sorted(p["prediction"]["ride_id"] for p in answer["predictions"]) == sorted(
        key for key, _ in rides
    )
    assert read_all(streams.client, streams.output) == []


def run_as_recipe(
    services: Services, streams: Streams, tmp_path: Path, needed: set[str], **values: str
) -> dict:
    """One event through the Lambda function with only what docs/stream.md says it needs: the
    recipe's variables of `needed` kinds, and what Lambda itself gives (region, credentials;
    the endpoint stands for AWS)."""
    recipe = {name for name, kind in lambda_recipe().items() if kind in needed}
    assert set(values) == recipe, f"the recipe names {sorted(recipe)}"
    lambda_given = {
        name: services.env[name]
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL")
    }
    bare = {"PATH": streams.install.env(dict(os.environ))["PATH"], "HOME": str(tmp_path)}
    with (
        LambdaRuntime() as runtime,
        run_function(
            runtime,
            "lambda_function.lambda_handler",
            cwd=REPO,
            log=tmp_path / "function.log",
            env={**lambda_given, **values},
            inherited=bare,
            python=streams.install.python,
        ),
    ):
        result = runtime.invoke(lambda_event(streams), timeout=120)
    assert result.error is None, result.error
    return result.response


def test_the_lambda_runs_with_exactly_the_variables_its_recipe_names(
    services: Services, trained: Trained, streams: Streams, tmp_path: Path
):
    rides = good_rides(5)
    put(streams, [(key, encoded(key, ride)) for key, ride in rides])
    answer = run_as_recipe(
        services,
        streams,
        tmp_path,
        # The session's tracking server hands out s3:// locations under its artifact root,
        # which is trusted without a setting.
        {"always"},
        MLFLOW_TRACKING_URI=services.tracking_uri,
        PREDICTIONS_STREAM_NAME=streams.output,
    )
    assert answer == {"batchItemFailures": []}
    found = predictions_by_ride(streams.client, streams.output)
    assert set(found) == {key for key, _ in rides}
    assert {copy["version"] for copies in found.values() for copy in copies} == {
        f"ride-duration/{trained.version}"
    }


def test_the_recipes_fallback_serves_when_the_tracking_server_is_down(
    services: Services, trained: Trained, streams: Streams, tmp_path: Path
):
    import mlflow

    mlflow.set_tracking_uri(services.tracking_uri)
    location = mlflow.MlflowClient().get_model_version_download_uri(
        "ride-duration", trained.version
    )
    rides = good_rides(3)
    put(streams, [(key, encoded(key, ride)) for key, ride in rides])
    answer = run_as_recipe(
        services,
        streams,
        tmp_path,
        {"always", "for `MODEL_LOCATION`", "as a fallback"},
        MLFLOW_TRACKING_URI=refused_url(),  # nothing listens there
        PREDICTIONS_STREAM_NAME=streams.output,
        MODEL_LOCATION=location,
        TRUSTED_MODEL_PREFIXES=f"models:/,runs:/,{location.split('/models/')[0]}/",
    )
    assert answer == {"batchItemFailures": []}
    found = predictions_by_ride(streams.client, streams.output)
    assert {copy["version"] for copies in found.values() for copy in copies} == {trained.run_id}


def consumer(
    services: Services, streams: Streams, tmp_path: Path, *args: str, **extra: str
) -> subprocess.Popen:
    env = {
        **function_env(services, streams, **extra),
        "INPUT_STREAM_NAME": streams.input,
        "STREAM_CHECKPOINT": str(tmp_path / "checkpoint.json"),
        "STREAM_DEAD_LETTER": str(tmp_path / "dead-letter.jsonl"),
        "STREAM_BATCH_SIZE": "25",
    }
    with (tmp_path / "consumer.log").open("ab") as log:  # the process keeps its own copy
        return subprocess.Popen(
            [str(streams.install.python), str(REPO / "stream.py"), *args],
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def test_the_consumer_killed_mid_stream_and_restarted_loses_nothing(
    services: Services, trained: Trained, streams: Streams, tmp_path: Path
):
    rides = good_rides(400)
    entries = [(key, encoded(key, ride)) for key, ride in rides]
    for i, (name, data) in enumerate(BAD.items()):
        entries.insert(30 + 37 * i, (f"bad-{name[:30]}", data))
    put(streams, entries)

    # The first consumer writes through a proxy that holds its fifth write unanswered: it is
    # then mid-stream, whatever the machine's speed, and is killed there.
    proxy = RefusingKinesis(services.s3_endpoint)
    proxy.hold_after(4)
    first = consumer(services, streams, tmp_path, KINESIS_ENDPOINT_URL=proxy.endpoint)
    try:
        deadline = time.monotonic() + 180
        while not proxy.held.wait(timeout=0.2):
            assert first.poll() is None, (tmp_path / "consumer.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "consumer.log").read_text()[-3000:]
        os.killpg(first.pid, signal.SIGKILL)  # the container dies
        first.wait()
    finally:
        stop(first)
        proxy.close()
    written_before = len(read_all(streams.client, streams.output))
    assert 0 < written_before < len(rides)

    dead_letter = tmp_path / "dead-letter.jsonl"
    kept_before = len(dead_letter.read_text().splitlines()) if dead_letter.exists() else 0
    second = consumer(services, streams, tmp_path, "--until-idle")
    log = (tmp_path / "consumer.log").read_text
    assert second.wait(timeout=300) == 1, log()[-3000:]  # records failed: exit code 1
    kept_now = len(BAD) - kept_before  # what the first kept aside before it was killed
    summary = re.search(
        r"read (\d+) records: (\d+) scored, (\d+) failed, (\d+) dead-lettered", log()
    )
    assert summary, log()[-3000:]
    read, scored, failed, dead = map(int, summary.groups())
    assert (failed, dead, read) == (kept_now, kept_now, scored + failed)
    found = predictions_by_ride(streams.client, streams.output)
    assert set(found) == {key for key, _ in rides}  # every good ride scored, none lost
    for copies in found.values():
        assert all(copy == copies[0] for copy in copies)  # duplicates are identical
    kept = [json.loads(line) for line in (tmp_path / "dead-letter.jsonl").read_text().splitlines()]
    assert sorted(k["partition_key"] for k in kept) == sorted(f"bad-{name[:30]}" for name in BAD)
    checkpoint = json.loads((tmp_path / "checkpoint.json").read_text())
    assert len(checkpoint) == 2  # both shards


def test_the_consumer_stops_cleanly_on_sigterm(
    services: Services, streams: Streams, tmp_path: Path
):
    process = consumer(services, streams, tmp_path)
    try:
        deadline = time.monotonic() + 120
        log = tmp_path / "consumer.log"
        while "reading " not in log.read_text():
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert "read 0 records: 0 scored, 0 failed, 0 dead-lettered; " in log.read_text()
    finally:
        stop(process)


@pytest.mark.parametrize(
    "event",
    [None, [], "text", {"Records": "x"}, {"Records": [None, 7, {"kinesis": "x"}]}],
    ids=["null", "a list", "text", "records that are text", "records that are no records"],
)
def test_an_event_that_is_no_kinesis_event_fails_no_invocation(
    services: Services, streams: Streams, tmp_path: Path, event
):
    [result] = invoke(streams, function_env(services, streams), tmp_path / "function.log", event)
    assert result.error is None, result.error
    assert result.response == {"batchItemFailures": []}


def test_a_second_consumer_on_one_checkpoint_is_refused_with_one_line(
    services: Services, streams: Streams, tmp_path: Path
):
    first = consumer(services, streams, tmp_path)
    try:
        deadline = time.monotonic() + 120
        while "reading " not in (tmp_path / "consumer.log").read_text():
            assert first.poll() is None, (tmp_path / "consumer.log").read_text()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.2)
        second = subprocess.run(
            [str(streams.install.python), str(REPO / "stream.py"), "--until-idle"],
            env={
                **function_env(services, streams),
                "INPUT_STREAM_NAME": streams.input,
                "STREAM_CHECKPOINT": str(tmp_path / "checkpoint.json"),
            },
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        stop(first)
    assert second.returncode == 2
    [line] = second.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: another consumer (pid ")
    assert "STREAM_CHECKPOINT" in line


def test_a_consumer_with_a_corrupt_checkpoint_starts_again_and_says_so(
    services: Services, streams: Streams, tmp_path: Path
):
    rides = good_rides(5)
    put(streams, [(key, encoded(key, ride)) for key, ride in rides])
    (tmp_path / "checkpoint.json").write_text("")  # a disk that filled up mid-write
    run = consumer(services, streams, tmp_path, "--until-idle")
    assert run.wait(timeout=300) == 0, (tmp_path / "consumer.log").read_text()[-3000:]
    assert "does not read" in (tmp_path / "consumer.log").read_text()
    assert (
        "read 5 records: 5 scored, 0 failed, 0 dead-lettered; "
        in (tmp_path / "consumer.log").read_text()
    )
    assert set(predictions_by_ride(streams.client, streams.output)) == {k for k, _ in rides}


def test_a_throttled_consumer_backs_off_and_loses_nothing(
    services: Services, streams: Streams, tmp_path: Path
):
    rides = good_rides(60)
    put(streams, [(key, encoded(key, ride)) for key, ride in rides])
    proxy = RefusingKinesis(services.s3_endpoint)
    proxy.throttled_reads = 12  # beyond botocore's own retries
    try:
        run = consumer(
            services, streams, tmp_path, "--until-idle", KINESIS_ENDPOINT_URL=proxy.endpoint
        )
        assert run.wait(timeout=300) == 0, (tmp_path / "consumer.log").read_text()[-3000:]
    finally:
        proxy.close()
    assert proxy.throttled_reads == 0
    assert set(predictions_by_ride(streams.client, streams.output)) == {k for k, _ in rides}


def test_after_a_split_the_consumer_reads_the_parent_then_its_children(
    services: Services, streams: Streams, tmp_path: Path
):
    before = good_rides(30)
    put(streams, [(key, encoded(key, ride)) for key, ride in before])
    first = consumer(services, streams, tmp_path, "--until-idle")
    assert first.wait(timeout=300) == 0, (tmp_path / "consumer.log").read_text()[-3000:]
    shard = streams.client.list_shards(StreamName=streams.input)["Shards"][0]
    middle = (
        int(shard["HashKeyRange"]["StartingHashKey"]) + int(shard["HashKeyRange"]["EndingHashKey"])
    ) // 2
    streams.client.split_shard(
        StreamName=streams.input, ShardToSplit=shard["ShardId"], NewStartingHashKey=str(middle)
    )
    after = [(f"after-{key}", ride) for key, ride in good_rides(30)]
    put(streams, [(key, encoded(key, ride)) for key, ride in after])
    second = consumer(services, streams, tmp_path, "--until-idle")
    assert second.wait(timeout=300) == 0, (tmp_path / "consumer.log").read_text()[-3000:]
    found = predictions_by_ride(streams.client, streams.output)
    assert set(found) == {key for key, _ in before + after}
    checkpoint = json.loads((tmp_path / "checkpoint.json").read_text())
    assert shard["ShardId"] in checkpoint["finished"]


def scrape(port: int) -> dict[str, float]:
    """The samples `/metrics` on `port` serves, by name and labels; none when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    except OSError:
        return {}
    samples = [line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#")]
    return {name: float(value) for name, value in samples}


def documented_metrics() -> set[str]:
    """The metric names docs/stream.md's scrape shows."""
    shown = re.findall(r"^(ride_duration_stream_\w+)", (REPO / "docs/stream.md").read_text(), re.M)
    assert shown
    return set(shown)


def test_the_consumer_serves_its_metrics_while_it_runs(
    services: Services, trained: Trained, streams: Streams, tmp_path: Path
):
    entries = [(key, encoded(key, ride)) for key, ride in good_rides(30)]
    entries[5:5] = [(f"bad-{name[:30]}", data) for name, data in list(BAD.items())[:3]]
    put(streams, entries)
    proxy = RefusingKinesis(services.s3_endpoint)
    proxy.throttled_reads = 4  # each one counted: botocore does not retry the consumer's calls
    port = free_port()
    process = consumer(
        services,
        streams,
        tmp_path,
        KINESIS_ENDPOINT_URL=proxy.endpoint,
        STREAM_METRICS_PORT=str(port),
        STREAM_MAX_RETRIES="0",  # each record delivered once: the counts are the records put
    )
    log = (tmp_path / "consumer.log").read_text
    try:
        deadline = time.monotonic() + 180
        metrics = scrape(port)
        # every record read, and the three bad ones' retries spent (counted once kept aside)
        while (
            metrics.get("ride_duration_stream_records_read_total") != len(entries)
            or metrics.get("ride_duration_stream_records_dead_lettered_total") != 3
        ):
            assert process.poll() is None, log()[-3000:]
            assert time.monotonic() < deadline, (metrics, log()[-3000:])
            time.sleep(0.5)
            metrics = scrape(port)
        process.send_signal(signal.SIGTERM)  # served until the consumer stops
        assert process.wait(timeout=30) == 1, log()[-3000:]  # records failed: exit code 1
    finally:
        stop(process)
        proxy.close()
    assert scrape(port) == {}  # closed with the consumer
    assert "read 33 records: 30 scored, 3 failed, 3 dead-lettered" in log()
    prefix = "ride_duration_stream"
    assert metrics[f"{prefix}_records_scored_total"] == 30
    assert metrics[f"{prefix}_records_failed_total"] == 3
    assert metrics[f"{prefix}_records_dead_lettered_total"] == 3
    throttled = 'api="GetRecords",code="ProvisionedThroughputExceededException"'
    assert metrics[f"{prefix}_kinesis_throttled_total{{{throttled}}}"] == 4
    assert sum(v for k, v in metrics.items() if k.startswith(f"{prefix}_kinesis_throttled_t")) == 4
    shards = [s["ShardId"] for s in streams.client.list_shards(StreamName=streams.input)["Shards"]]
    for shard in shards:  # read to their newest record
        assert metrics[f'{prefix}_millis_behind_latest{{shard="{shard}"}}'] == 0
    served = f'model_version="ride-duration/{trained.version}",run_id="{trained.run_id}"'
    assert metrics[f"{prefix}_model_info{{{served}}}"] == 1
    names = {re.split(r"[{ ]", key)[0] for key in metrics}
    assert documented_metrics() <= names, documented_metrics() - names


@pytest.mark.timeout(300)
def test_the_consumer_scores_each_batch_with_the_version_serving_as_it_starts(
    services: Services, refreshable: Refreshable, streams: Streams, tmp_path: Path
):
    """MODEL_REFRESH_SECONDS: the alias moves between two puts of 20 rides; the first 20 are
    the forest's predictions, the next 20 the linear model's, each record naming its own."""
    move_alias(services, refreshable.forest)
    port = free_port()
    process = consumer(
        services,
        streams,
        tmp_path,
        MODEL_URI=REFRESHED_URI,
        MODEL_REFRESH_SECONDS="1",
        STREAM_METRICS_PORT=str(port),
    )
    log = (tmp_path / "consumer.log").read_text
    old, new = f"{REFRESHED}/{refreshable.forest}", f"{REFRESHED}/{refreshable.linear}"
    keys = [f"ride-{number}" for number in range(40)]
    try:
        put(streams, [(key, encoded(key, RIDE)) for key in keys[:20]])
        scored = "ride_duration_stream_records_scored_total"
        wait_for(lambda: scrape(port).get(scored) == 20, 120, f"20 scored: {log()[-2000:]}")
        move_alias(services, refreshable.linear)
        switched = 'ride_duration_stream_model_refreshes_total{outcome="switched"}'
        wait_for(lambda: scrape(port).get(switched) == 1, 30, "the switch")
        put(streams, [(key, encoded(key, RIDE)) for key in keys[20:]])
        wait_for(lambda: scrape(port).get(scored) == 40, 120, "40 scored")
        metrics = scrape(port)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log()[-3000:]
    finally:
        stop(process)
    found = predictions_by_ride(streams.client, streams.output)
    assert sorted(found) == sorted(keys)
    for number, key in enumerate(keys):
        [record] = found[key]
        version = old if number < 20 else new
        assert record["version"] == version
        assert record["prediction"]["ride_duration"] == refreshable.minutes[version]
    info = {
        re.search(r'model_version="([^"]+)"', key).group(1): value
        for key, value in metrics.items()
        if key.startswith("ride_duration_stream_model_info{")
    }
    assert info == {new: 1}  # the consumer names the one version it scores with
    assert f"model refresh: {REFRESHED_URI} now names {new}; serving it (was {old})" in log()
