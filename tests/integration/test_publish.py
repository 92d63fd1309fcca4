"""A month's current set is switched in one step, locally and on S3 (moto): a publish killed
just before or just after each of its writes leaves the previous set or the new one, each with
its manifest, and readers racing 50 switches see one whole set every time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import fsspec
import pandas as pd
import pytest

from ride_duration.batch import manifest
from ride_duration.batch.paths import MonthOutput
from ride_duration.core.months import Month
from tests.conftest import REPO
from tests.support.outputs import model, publish
from tests.support.publish_child import WRITES
from tests.support.servers import moto_s3

MARCH = Month(2021, 3)
BUCKET, VERSIONED_BUCKET = "sets", "sets-versioned"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A moto S3 server of this module's own, with a plain and a versioned bucket."""
    with moto_s3(tmp_path_factory.mktemp("moto") / "moto.log") as env:
        client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"])
        client.create_bucket(Bucket=BUCKET)
        client.create_bucket(Bucket=VERSIONED_BUCKET)
        client.put_bucket_versioning(
            Bucket=VERSIONED_BUCKET, VersioningConfiguration={"Status": "Enabled"}
        )
        # fsspec keeps one S3 filesystem per set of arguments, its endpoint read from the
        # environment when it was made: this module's, and the session's after it, are new.
        fsspec.get_filesystem_class("s3").clear_instance_cache()
        try:
            yield env
        finally:
            fsspec.get_filesystem_class("s3").clear_instance_cache()


def root_of(where: str, tmp_path: Path) -> str:
    if where == "local":
        return str(tmp_path / "out")
    bucket = VERSIONED_BUCKET if where == "s3 versioned" else BUCKET
    return f"s3://{bucket}/{uuid.uuid4().hex}/out"


def child(module: str, *arguments: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", f"tests.support.{module}", *arguments],
        cwd=REPO,
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def sets_read(root: str) -> list[tuple[str, int]]:
    """The rows per model version that `pandas.read_parquet(root)` returns."""
    fsspec.filesystem("s3").invalidate_cache() if root.startswith("s3://") else None
    table = pd.read_parquet(root)
    return sorted(table.groupby("model_version").size().items())


def described(root: str) -> tuple[str, int]:
    """The model version and rows that the month's manifest gives for its current set."""
    content = manifest.current(MonthOutput(root, "green", MARCH))
    assert content is not None
    return content["model"]["label"], content["rows_scored"]


POINTS = [(when, write) for write in range(1, WRITES + 1) for when in ("before", "after")]


@pytest.mark.parametrize("where", ["local", "s3"])
@pytest.mark.parametrize("new_version", [2, 1], ids=["new version", "replacement"])
@pytest.mark.parametrize(("when", "write"), POINTS, ids=[f"{w}-{n}" for w, n in POINTS])
def test_a_publish_killed_at_any_write_leaves_the_old_set_or_the_new_one_with_its_manifest(
    s3: dict, tmp_path: Path, where: str, new_version: int, when: str, write: int
):
    root = root_of(where, tmp_path)
    publish(root, "green", MARCH, model(1), rows=3, seed=0)
    killed = child("publish_child", root, str(new_version), "5", "1", when, str(write))
    _, errors = killed.communicate(timeout=120)
    assert killed.returncode == -9, errors
    old, new = ("m/1", 3), (f"m/{new_version}", 5)
    switched = write > 3 or (write == 3 and when == "after")
    seen = new if switched else old
    assert sets_read(root) == [seen]
    assert described(root) == seen  # the set there comes with its own manifest
    rerun = child("publish_child", root, str(new_version), "5", "1")
    _, errors = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, errors
    assert sets_read(root) == [new]
    assert described(root) == new
    assert unfinished(root) == []


def unfinished(root: str) -> list[str]:
    """What is left unfinished under `root`: hidden temporary files, and unfinished S3
    multipart uploads."""
    if not root.startswith("s3://"):
        return sorted(str(p) for p in Path(root).rglob(".*.inprogress"))
    bucket, _, prefix = root.removeprefix("s3://").partition("/")
    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    listed = client.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
    return sorted(upload["Key"] for upload in listed.get("Uploads", []))


@pytest.mark.parametrize("write", [2, 3, 4], ids=["staged set", "switch", "manifest"])
def test_a_run_killed_inside_a_write_leaves_a_temporary_file_the_next_run_removes(
    s3: dict, tmp_path: Path, write: int
):
    root = root_of("local", tmp_path)
    publish(root, "green", MARCH, model(1), rows=3, seed=0)
    killed = child("publish_child", root, "2", "5", "1", "renaming", str(write))
    _, errors = killed.communicate(timeout=120)
    assert killed.returncode == -9, errors
    assert len(unfinished(root)) == 1  # what the killed run left, as the issue found it
    # The next run of the month, with another model, removes it once it holds the lock.
    rerun = child("publish_child", root, "3", "4", "1")
    _, errors = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, errors
    assert unfinished(root) == []
    assert sets_read(root) == [("m/3", 4)]


@pytest.mark.parametrize("folder", ["versions", "current"])
def test_unfinished_uploads_a_killed_run_left_on_s3_are_aborted_by_the_next_run(
    s3: dict, tmp_path: Path, folder: str
):
    """A run killed while it uploads a set in parts leaves the parts on S3 (up to 67 MB each,
    billed) until the next run of the month, with any model, aborts them."""
    root = root_of("s3", tmp_path)
    output = MonthOutput(root, "green", MARCH)
    bucket, _, prefix = root.removeprefix("s3://").partition("/")
    where = f"_versions/{output.partition}" if folder == "versions" else output.partition
    key = f"{prefix}/{where}/run7.parquet"
    client = boto3.client("s3", endpoint_url=s3["AWS_ENDPOINT_URL"])
    upload = client.create_multipart_upload(Bucket=bucket, Key=key)
    client.upload_part(
        Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=b"x" * 1024
    )
    other = f"{prefix}/{output.partition.replace('month=03', 'month=04')}/run7.parquet"
    client.create_multipart_upload(Bucket=bucket, Key=other)  # another month's: kept
    time.sleep(1.1)  # S3 tells times in whole seconds: the upload is older than the next lock
    assert unfinished(root) == sorted([key, other])
    rerun = child("publish_child", root, "2", "5", "1")
    _, errors = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, errors
    assert unfinished(root) == [other]
    assert sets_read(root) == [("m/2", 5)]


@pytest.mark.parametrize("where", ["local", "s3", "s3 versioned"])
def test_a_reader_racing_50_switches_sees_one_whole_set_every_time(
    s3: dict, tmp_path: Path, where: str
):
    root = root_of(where, tmp_path)
    publish(root, "green", MARCH, model(1), rows=3)
    stop = tmp_path / "stop"
    arguments = [root, str(stop)] + (["--version-aware"] if where == "s3 versioned" else [])
    reader = child("reader_child", *arguments)
    try:
        time.sleep(1.5)  # the reader's imports
        for switch in range(50):
            version = 2 if switch % 2 == 0 else 1
            publish(root, "green", MARCH, model(version), rows=2 + version, seed=switch)
    finally:
        stop.touch()
        output, errors = reader.communicate(timeout=120)
    lines = [json.loads(line) for line in output.splitlines()]
    reads = [line for line in lines if "sets" in line]
    assert len(reads) > 20, errors  # the reader read throughout
    whole = ([["m/1", 3]], [["m/2", 4]])
    assert [line["sets"] for line in reads if line["sets"] not in whole] == []
    assert {tuple(map(tuple, line["sets"])) for line in reads} == {(("m/1", 3),), (("m/2", 4),)}
    failures = [line for line in lines if "error" in line]
    if where == "s3":
        # s3fs sends the ETag it first saw with every range it reads: a read that overlaps a
        # switch fails instead of mixing two files; read again, or read a versioned bucket.
        assert all(
            f["error"].startswith("s3fs.") and "FileExpired" in f["error"] for f in failures
        ), failures
    else:
        # DuckDB's own reader opens a file twice (to plan, then to scan): across a switch it
        # fails decoding the new file with the old one's footer (TProtocolException, "don't
        # know what type", ...), never answering with a mix (docs/batch.md says so).
        assert [f for f in failures if f["reader"] != "duckdb read_parquet"] == []
        assert [f for f in failures if not f["error"].startswith(("duckdb.", "_duckdb."))] == []
