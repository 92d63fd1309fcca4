"""SIGTERM and SIGINT end a scoring run at any moment after it claims its month, locally and on
S3: the process ends through the signal (SIGTERM: killed by it, 143 in a shell; SIGINT: exit
130), its Prefect flow run Crashed, nothing is published, nothing is left behind, and the next run
publishes the month cleanly.

Each signal is sent while the run is frozen (SIGSTOP) and seen to have published nothing yet, then
the run resumes (SIGCONT) into it: on a loaded machine the test itself can fall behind the run, and
a signal sent after the publish tests nothing (the run rightly ends 0 with its month published).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest

from ride_duration.batch.paths import MonthOutput
from ride_duration.core.months import Month
from tests.conftest import REPO
from tests.integration.conftest import OUTPUT_BUCKET, TEMPLATE, Services, Trained, run_cli
from tests.support.tlc_fake import file_name, make_trips, write_trips

JUNE = Month(2021, 6)
# With BATCH_SIZE 200 below, each run scores for over a second after its claim on a fast idle
# machine: every delay lands before its publish.
ROWS = 100_000
# Tries per delay when the test fell behind and the run published before the signal was sent.
TRIES = 3

# How a run ends: killed by SIGTERM once Prefect has marked its flow run Crashed (143 in a
# shell), or exiting 130 after SIGINT's KeyboardInterrupt; or, when its libraries hang after
# the signal, ended by score.py's own guard with 128 + the signal's number (cli.end_within).
EXIT = {signal.SIGTERM: {-signal.SIGTERM, 143}, signal.SIGINT: {130}}

# Seconds after the month's lock appears: across the claim, the pandas import the scoring
# loop's first batch triggers (where a SIGTERM on S3 went unseen), scoring, and the publish.
DELAYS = (0.0, 0.05, 0.1, 0.12, 0.14, 0.16, 0.25, 0.4)


@pytest.fixture(scope="module")
def june(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("june")
    write_trips(folder / file_name("green", 2021, 6), make_trips("green", 2021, 6, ROWS))
    return folder


class Store:
    """A month's output, locally or on the session's S3: what is there, seen from outside."""

    def __init__(self, services: Services, where: str, tmp_path: Path) -> None:
        self.where = where
        if where == "local":
            self.root = str(tmp_path / "out")
        else:
            self.prefix = f"signals/{uuid.uuid4().hex}"
            self.root = f"s3://{OUTPUT_BUCKET}/{self.prefix}"
            self.client = boto3.client("s3", endpoint_url=services.s3_endpoint)
        self.output = MonthOutput(self.root, "green", JUNE)

    def names(self) -> list[str]:
        """Every file under the root, relative to it."""
        if self.where == "local":
            base = Path(self.root)
            found = base.rglob("*") if base.exists() else []
            return sorted(str(p.relative_to(base)) for p in found if p.is_file())
        listed = self.client.list_objects_v2(Bucket=OUTPUT_BUCKET, Prefix=self.prefix + "/")
        return sorted(o["Key"].removeprefix(self.prefix + "/") for o in listed.get("Contents", []))

    def uploads(self) -> list[str]:
        """The unfinished multipart uploads under the root (none locally)."""
        if self.where == "local":
            return []
        listed = self.client.list_multipart_uploads(Bucket=OUTPUT_BUCKET, Prefix=self.prefix)
        return [upload["Key"] for upload in listed.get("Uploads", [])]

    def locks(self) -> set[str]:
        return {name for name in self.names() if "/_lock." in "/" + name}

    def published(self) -> list[str]:
        """The predictions and manifests there (not the lock, nor hidden temporary files)."""
        return [
            name
            for name in self.names()
            if name.rsplit("/", 1)[-1].endswith((".parquet", "_manifest.json"))
            and not name.rsplit("/", 1)[-1].startswith(".")
        ]

    def clear(self) -> None:
        """Remove everything under the root."""
        if self.where == "local":
            shutil.rmtree(self.root, ignore_errors=True)
            return
        for name in self.names():
            self.client.delete_object(Bucket=OUTPUT_BUCKET, Key=f"{self.prefix}/{name}")


def _signal_before_publish(process: subprocess.Popen, store: Store, number: signal.Signals) -> bool:
    """Send `number` to the run if it is alive and has published nothing; whether it was sent.

    The run is frozen while the store is looked at, so it cannot publish in between; it takes
    the signal as it resumes."""
    process.send_signal(signal.SIGSTOP)  # nothing, when it has ended already
    try:
        if process.poll() is not None or store.published():
            return False
        process.send_signal(number)
        return True
    finally:
        process.send_signal(signal.SIGCONT)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for(condition: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


@pytest.mark.parametrize("where", ["local", "s3"])
@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_at_any_moment_after_the_claim_publishes_nothing_and_leaves_nothing(
    services: Services,
    trained: Trained,
    local_model: Path,
    june: Path,
    tmp_path: Path,
    where: str,
    number: signal.Signals,
):
    store = Store(services, where, tmp_path)
    env = {
        **services.env,
        "MODEL_URI": str(local_model),
        "TRUSTED_MODEL_PREFIXES": str(local_model),
        "INPUT_URI_TEMPLATE": str(june / TEMPLATE),
        "OUTPUT_ROOT": store.root,
        "BATCH_SIZE": "200",  # 500 batches: every delay lands before the publish
    }
    outcomes, late = [], []
    for delay in DELAYS:
        for _ in range(TRIES):
            known = store.locks()  # a lock a killed run left is taken over by the next one
            process = subprocess.Popen(
                [sys.executable, str(REPO / "score.py"), "green", "2021", "6"],
                env=env,
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                # As from a terminal: a test run in the background inherits SIGINT ignored.
                preexec_fn=_default_sigint,
            )
            try:
                _wait_for(lambda known=known: bool(store.locks() - known))
                time.sleep(delay)
                sent = _signal_before_publish(process, store, number)
                _, errors = process.communicate(timeout=60)
            finally:
                process.kill()
            if sent:
                break
            late.append((delay, process.returncode))
            store.clear()  # the test fell behind: the run published; try this moment again
        assert sent, f"each run published before its signal was sent: {late}"
        left = [name for name in store.names() if "/_lock." not in "/" + name]
        # "Exception ignored in ...": the signal's exception was dropped inside a finalizer.
        dropped = "Exception ignored" in errors
        outcomes.append((delay, process.returncode, left, store.uploads(), dropped))
        assert "Traceback" not in errors, errors[-3000:]
    # Every run ends through the signal, its Prefect run marked Crashed first; none publishes,
    # and each cleans up after itself (its staged file, temporary files and uploads).
    assert [o for o in outcomes if o[1] not in EXIT[number] or o[2] or o[3] or o[4]] == [], outcomes

    rerun = run_cli("score.py", "green", "2021", "6", env=env, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert store.names() == [
        f"_monitoring/green-{store.output.month}.parquet",  # the month's row of the table
        f"_versions/{store.output.partition}/{trained.run_id}.parquet",
        f"{store.output.partition}/_manifest.json",
        f"{store.output.partition}/predictions.parquet",
    ]
    assert store.uploads() == []
