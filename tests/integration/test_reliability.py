"""Faults against real processes: S3 going down mid-write, a run killed mid-month, storage that
refuses writes, two runs of one month at once, a second model version, and credentials."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import fsspec
import pyarrow.parquet as pq
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterName,
)
from prefect.client.schemas.sorting import ArtifactSort, FlowRunSort

from ride_duration.batch import manifest
from ride_duration.batch.paths import LockFiles, MonthOutput
from ride_duration.core.months import Month
from tests.conftest import REPO
from tests.integration.conftest import (
    OUTPUT_BUCKET,
    TEMPLATE,
    Services,
    Trained,
    run_cli,
    train_model,
)
from tests.support.servers import CuttableProxy, refused_url
from tests.support.tlc_fake import file_name, make_trips, write_trips

BIG_ROWS = 200_000
MAY, MARCH = Month(2021, 5), Month(2021, 3)


@pytest.fixture(scope="module")
def big_month(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("big")
    write_trips(folder / file_name("green", 2021, 5), make_trips("green", 2021, 5, BIG_ROWS))
    return folder


def _env(services: Services, model: Path, inputs: Path, **extra: str) -> dict[str, str]:
    return {
        **services.env,
        "MODEL_URI": str(model),
        "TRUSTED_MODEL_PREFIXES": str(model),
        "INPUT_URI_TEMPLATE": str(inputs / TEMPLATE),
        **extra,
    }


def _error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


def _complete(output: MonthOutput) -> dict:
    """The manifest of the month's current set, after checking that the set is whole: its
    readable copy describes the file there now, its rows are the file's, and the set is the
    version it names under _versions/, byte for byte."""
    content = manifest.current(output)
    assert content is not None, f"no current set at {output.current}"
    with fsspec.open(output.manifest, "rt") as handle:
        copy = manifest.parse(handle.read())
    assert copy == content  # the copy beside the set describes it (size, version tag)
    with fsspec.open(output.current, "rb") as handle:
        data = handle.read()
        handle.seek(0)
        assert content["output"]["rows"] == pq.read_metadata(handle).num_rows
    assert content["output"]["bytes"] == len(data)
    with fsspec.open(content["output"]["version_uri"], "rb") as handle:
        assert handle.read() == data
    return content


def _wait_for(condition, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_s3_going_down_during_the_write_publishes_nothing_and_a_rerun_succeeds(
    services: Services, trained: Trained, local_model: Path, big_month: Path, tmp_path: Path
):
    output = MonthOutput(f"s3://{OUTPUT_BUCKET}/outage", "green", MAY)
    proxy = CuttableProxy(int(services.s3_endpoint.rsplit(":", 1)[1]))
    try:
        env = _env(
            services,
            local_model,
            big_month,
            AWS_ENDPOINT_URL=proxy.endpoint,
            OUTPUT_ROOT=f"s3://{OUTPUT_BUCKET}/outage",
            # Fewer client-side retries under the flow's own, so the outage is felt quickly.
            AWS_MAX_ATTEMPTS="1",
        )
        proxy.cut_after(1_000_000)  # the output is ~10 MB: the server dies 1 MB into it
        failed = run_cli("score.py", "green", "2021", "5", env=env, cwd=tmp_path)
        assert failed.returncode == 2, failed.stderr[-4000:]
        # The month's files: its folder (lock, current set) and where its versions are kept
        # (the task's retries meet the server down at the lock).
        kept = f"{output.root}/_versions/{output.partition}/"
        assert _error_line(failed).startswith(
            (f"error: cannot write {output.folder}/", f"error: cannot write {kept}")
        )
        assert proxy.down
        listed = services.s3().list_objects_v2(Bucket=OUTPUT_BUCKET, Prefix="outage/")
        names = [item["Key"].removeprefix("outage/") for item in listed.get("Contents", [])]
        assert not [name for name in names if name.endswith((".parquet", "_manifest.json"))]

        proxy.restore()
        rerun = run_cli("score.py", "green", "2021", "5", env=env, cwd=tmp_path)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
    finally:
        proxy.close()
    content = _complete(output)
    assert content["rows_read"] == BIG_ROWS
    assert content["model"]["run_id"] == trained.run_id


def _staged_a_row_group(partition: Path) -> bool:
    """True once a run's staging file in `partition` holds more than its header."""
    for staging in partition.glob(".*.inprogress") if partition.exists() else ():
        with contextlib.suppress(FileNotFoundError):  # renamed as the run completes
            if staging.stat().st_size > 4096:
                return True
    return False


def test_a_run_killed_in_the_middle_of_a_month_leaves_nothing_and_a_rerun_completes_it(
    services: Services, trained: Trained, local_model: Path, big_month: Path, tmp_path: Path
):
    out = tmp_path / "out"
    # Small batches: the month is 200 row groups written one by one, so that the run is still
    # writing when it is killed (the compiled forest scores it in a fraction of a second).
    env = _env(services, local_model, big_month, OUTPUT_ROOT=str(out), BATCH_SIZE="1000")
    output = MonthOutput(str(out), "green", MAY)
    partition = Path(output.folder)
    kept = out / "_versions" / output.partition / f"{trained.run_id}.parquet"
    process = subprocess.Popen(
        [sys.executable, str(REPO / "score.py"), "green", "2021", "5"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_for(lambda: _staged_a_row_group(kept.parent))  # killed mid-month
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert not Path(output.current).exists()
    assert not Path(output.manifest).exists()
    assert not kept.exists()
    assert list(partition.glob("_lock.*.json"))  # left by the dead run

    rerun = run_cli("score.py", "green", "2021", "5", env=env, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    content = _complete(output)
    assert content["rows_read"] == BIG_ROWS
    assert content["rows_scored"] == pq.read_metadata(output.current).num_rows
    assert sorted(p.name for p in partition.iterdir()) == ["_manifest.json", "predictions.parquet"]
    # the dead run's staging file and lock are gone
    assert sorted(p.name for p in kept.parent.iterdir()) == [kept.name]


@pytest.mark.parametrize(
    "refusal", ["a file where a folder should be", "a bucket that does not exist"]
)
def test_a_location_that_refuses_writes_fails_clearly(
    services: Services, trained: Trained, input_dir: Path, tmp_path: Path, refusal: str
):
    if refusal.startswith("a file"):
        blocker = tmp_path / "blocker"
        blocker.write_text("not a folder")
        root = str(blocker / "out")
    else:
        root = "s3://no-such-bucket/rides"
    env = {**services.env, "INPUT_URI_TEMPLATE": str(input_dir / TEMPLATE), "OUTPUT_ROOT": root}
    started = time.monotonic()
    result = run_cli("score.py", "green", "2021", "3", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert _error_line(result).startswith(f"error: cannot write {root}/taxi_type=green/")
    assert time.monotonic() - started < 60  # a refusal is not retried
    if refusal.startswith("a bucket"):
        buckets = [b["Name"] for b in services.s3().list_buckets()["Buckets"]]
        assert "no-such-bucket" not in buckets  # not created behind the user's back


def test_two_runs_of_one_month_and_model_at_once_never_mix(
    services: Services, trained: Trained, local_model: Path, big_month: Path, tmp_path: Path
):
    out = tmp_path / "out"
    env = _env(services, local_model, big_month, OUTPUT_ROOT=str(out), BATCH_SIZE="1000")
    output = MonthOutput(str(out), "green", MAY)
    staging = out / "_versions" / output.partition
    first = subprocess.Popen(
        [sys.executable, str(REPO / "score.py"), "green", "2021", "5"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # The first run is paused mid-month, holding its lock, while the second one starts: the
    # month is scored faster than a second process can start.
    _wait_for(lambda: _staged_a_row_group(staging))
    os.kill(first.pid, signal.SIGSTOP)
    try:
        assert list(Path(output.folder).glob("_lock.*.json"))  # the paused run holds the month
        second = run_cli("score.py", "green", "2021", "5", env=env, cwd=tmp_path)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    _, first_stderr = first.communicate(timeout=300)
    assert first.returncode == 0, first_stderr[-3000:]
    assert second.returncode == 2
    assert "green 2021-05 is being scored by" in _error_line(second)
    content = _complete(output)
    ids = pq.read_table(output.current, columns=["ride_id"])["ride_id"]
    assert len(ids) == content["rows_scored"]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_new_model_version_becomes_the_current_set_and_the_old_one_is_kept_untouched(
    services: Services, trained: Trained, input_dir: Path, tmp_path: Path
):
    out = tmp_path / "out"
    env = {**services.env, "INPUT_URI_TEMPLATE": str(input_dir / TEMPLATE), "OUTPUT_ROOT": str(out)}
    assert run_cli("score.py", "green", "2021", "3", env=env, cwd=tmp_path).returncode == 0
    output = MonthOutput(str(out), "green", MARCH)
    assert _complete(output)["model"]["run_id"] == trained.run_id
    old = out / "_versions" / output.partition / f"{trained.run_id}.parquet"
    before = _sha256(old)  # its manifest is in its footer

    # Its own registered name: other tests rely on ride-duration's versions.
    candidate = {**env, "MODEL_NAME": "ride-duration-candidate", "MODEL_ALIAS": "candidate"}
    new_run = train_model(
        candidate, tmp_path, "ride-duration-candidate", "--estimator", "linear"
    ).run_id
    result = run_cli(
        "score.py",
        "green",
        "2021",
        "3",
        "--model-uri",
        "models:/ride-duration-candidate@candidate",
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    content = _complete(output)  # the new version's set, byte for byte
    assert content["model"]["run_id"] == new_run
    assert Path(content["output"]["version_uri"]) == old.with_name(f"{new_run}.parquet")
    assert _sha256(old) == before
    assert manifest.from_footer(str(old))["model"]["run_id"] == trained.run_id
    assert sorted(p.name for p in old.parent.iterdir()) == sorted([old.name, f"{new_run}.parquet"])
    assert sorted(p.name for p in Path(output.folder).iterdir()) == [
        "_manifest.json",
        "predictions.parquet",
    ]


async def _latest(run_name: str, artifact_key: str) -> tuple[dict, str]:
    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[run_name])),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=1,
        )
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[artifact_key])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    return runs[0].parameters, artifacts[0].data


SECRET = "S3cr3tDoNotLeak"


@pytest.mark.parametrize(
    ("case", "argv", "extra_env", "says"),
    [
        ("secrets in the environment", [], {}, None),
        (
            "a model URI with a password",
            ["--model-uri", f"s3://AKIAFAKE:{SECRET}@mlflow-artifacts/m"],
            {},
            "carries credentials",
        ),
        (
            "a presigned input template",
            [],
            {"INPUT_URI_TEMPLATE": "https://h/{taxi_type}.parquet?X-Amz-Signature=" + SECRET},
            "carries credentials",
        ),
        (
            "a tracking URI with a password",
            [],
            {"MLFLOW_TRACKING_URI": refused_url().replace("//", f"//user:{SECRET}@")},
            "did not answer",
        ),
        (
            "a tracking URI with a token alone, logging at DEBUG",
            ["--debug"],
            {"MLFLOW_TRACKING_URI": refused_url().replace("//", f"//{SECRET}@")},
            "did not answer",
        ),
        (
            "an output location with a token alone",
            ["--output-root", f"s3://{SECRET}@predictions/x"],
            {},
            "carries credentials",
        ),
    ],
)
def test_no_credential_reaches_logs_parameters_artifacts_manifests_or_errors(
    services: Services,
    trained: Trained,
    input_dir: Path,
    tmp_path: Path,
    case,
    argv,
    extra_env,
    says,
):
    out = tmp_path / "out"
    env = {
        **services.env,
        "INPUT_URI_TEMPLATE": str(input_dir / TEMPLATE),
        "OUTPUT_ROOT": str(out),
        "AWS_SESSION_TOKEN": SECRET + "-session",
        "MLFLOW_TRACKING_TOKEN": SECRET + "-token",
        "MLFLOW_RETRIES": "0",
        **extra_env,
    }
    result = run_cli("score.py", "green", "2021", "3", *argv, env=env, cwd=tmp_path)
    seen = result.stdout + result.stderr
    if says is None:
        assert result.returncode == 0, result.stderr[-2000:]
        manifests = list(out.rglob("_manifest.json"))
        assert manifests
        seen += "".join(p.read_text() for p in manifests)
        seen += "".join(json.dumps(manifest.from_footer(str(p))) for p in out.rglob("*.parquet"))
        parameters, artifact = asyncio.run(_latest("score-green-2021-03", "score-green-2021-03"))
        seen += json.dumps(parameters) + artifact
    elif "--debug" in argv:  # the traceback, then the error: nothing of the secret in either
        assert result.returncode != 0
        assert says in seen
    else:
        assert result.returncode == 2
        assert says in _error_line(result)
    assert SECRET not in seen


def _race_on_s3(files: LockFiles, ready, done, results) -> None:
    from ride_duration.batch.locks import MonthLock

    lock = MonthLock(files, owner=f"racer-{os.getpid()}", stale_after_seconds=600)
    ready.wait()
    results.put(lock.acquire() is None)
    done.wait()


def test_of_eight_processes_taking_over_a_stale_lock_on_s3_exactly_one_wins(services: Services):
    """The lock's exclusive create on S3 is a conditional PUT (If-None-Match): as locally,
    exactly one racer wins a stale lock, round after round."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    s3 = services.s3()
    for round_ in range(10):
        files = MonthOutput(f"s3://predictions/race-{round_}", "green", MARCH).lock
        key = files.file(round_ % 2).removeprefix("s3://predictions/")
        stale = {"owner": "gone", "host": "elsewhere", "heartbeat": time.time() - 7200}
        s3.put_object(Bucket="predictions", Key=key, Body=json.dumps(stale).encode())
        ready, done, results = context.Barrier(8), context.Barrier(8), context.Queue()
        racers = [
            context.Process(target=_race_on_s3, args=(files, ready, done, results))
            for _ in range(8)
        ]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(timeout=120)
        wins = [results.get(timeout=10) for _ in racers]
        assert wins.count(True) == 1, f"round {round_}: {wins.count(True)} winners"
