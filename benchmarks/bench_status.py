"""Benchmark of `python backfill.py green,yellow,fhv,fhvhv 2009-01 2021-06 --status`.

    python benchmarks/bench_status.py [--rounds 3] [--results benchmarks/RESULTS.md]

The command prints the state of 600 months (4 taxi types x 150 months); it is timed as a
user runs it. Every measurement is a fresh process timed from outside (wall seconds), with a
Prefect server already running (PREFECT_API_URL; started here on 127.0.0.1 with a
PREFECT_HOME of its own, stopped at the end) and the model `train.py` registers in a sqlite
store (trained once, cached as bench_process.py caches it). Three configurations, each
prepared once before timing:
  - local: the trip files in a folder, the output root in another;
  - http:  the same trip files served by `python -m http.server` on 127.0.0.1, outputs local;
  - s3:    a moto server on 127.0.0.1, the trip files uploaded to a bucket and the output
           root in it too.
The trip files are small generated ones (tests.support.tlc_fake), one per month the TLC
published (yellow from 2009-01, green from 2013-08, fhv from 2015-01, fhvhv from 2019-02), so
the other months are "not published". Of the months the model can score, most have a
published current set (done), some none (missing), some a failed score run in Prefect
(failed), some a set made from another input or model version (stale); the model cannot
score fhv (its layout has no trip distance): its 150 months are unscorable. Each month with a
set has a completed score run in Prefect, as after a backfill. The configurations are
interleaved round by round; the table gives medians, the states the last round printed, and
what it read of the trip files: the http server's and moto's request logs, and for local an
strace of one more (untimed) run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.bench import machine, versions  # noqa: E402 - after sys.path
from benchmarks.bench_process import CACHE as MODEL_CACHE  # noqa: E402 - after sys.path
from benchmarks.bench_process import (  # noqa: E402 - after sys.path
    registered_model,
    timed,
    trips_folder,
)
from benchmarks.results import check_table, publish, table  # noqa: E402 - after sys.path
from tests.support.servers import free_port, http_ok, running  # noqa: E402 - after sys.path

if TYPE_CHECKING:
    from ride_duration.model.resolve import ModelRef

BIN = Path(sys.executable).parent
CACHE = REPO / "benchmarks" / ".cache" / "status"
WORK = REPO / "benchmarks" / ".work" / "status"
TAXI_TYPES = ("green", "yellow", "fhv", "fhvhv")
START, END = "2009-01", "2021-06"
# The first month the TLC published of each taxi type: the earlier ones have no trip file.
FIRST_PUBLISHED = {"yellow": "2009-01", "green": "2013-08", "fhv": "2015-01", "fhvhv": "2019-02"}
FILE_NAME = "{taxi_type}_tripdata_{year:04d}-{month:02d}.parquet"
TRIP_ROWS = 300  # rows of each generated trip file: the command never reads them
BUCKET = "bench-status"
SCORE_FLOW = "ride-duration-prediction"  # the score flow's name, which names its runs
TARGET_SECONDS = 60
# The prepared states of the months that get a current set.
PUBLISHED = ("done", "stale (input)", "stale (model)")
STATES = ("done", "stale", "missing", "failed", "running", "not published", "unscorable")
CONFIGURATIONS = ("local", "http", "s3")
AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


# --- preparation --------------------------------------------------------------------------------


def all_months() -> list:
    from ride_duration.core.months import Month, month_range

    return month_range(Month.parse(START), Month.parse(END))


def trip_files() -> dict[tuple[str, str], Path]:
    """A small generated trip file for every month the TLC published (made once, cached)."""
    from tests.support.tlc_fake import make_trips, write_trips

    folder = CACHE / "trips"
    files = {}
    for taxi_type in TAXI_TYPES:
        for month in all_months():
            if str(month) < FIRST_PUBLISHED[taxi_type]:
                continue
            path = folder / FILE_NAME.format(
                taxi_type=taxi_type, year=month.year, month=month.month
            )
            if not path.exists():
                trips = make_trips(taxi_type, month.year, month.month, rows=TRIP_ROWS)
                write_trips(path.with_suffix(".tmp"), trips).rename(path)
            files[(taxi_type, str(month))] = path
    return files


def intended_states(files: dict, scorable: set[str]) -> dict[tuple[str, str], str]:
    """What each month is made to be: done, stale (input), stale (model), missing, failed,
    not published or unscorable. The same months in every configuration."""
    intended = {}
    k = 0
    for taxi_type in TAXI_TYPES:
        for month in all_months():
            key = (taxi_type, str(month))
            if taxi_type not in scorable:
                intended[key] = "unscorable"
            elif key not in files:
                intended[key] = "not published"
            else:
                k += 1
                intended[key] = {
                    5: "missing",
                    11: "failed",
                    2: "stale (input)",
                    15: "stale (input)",
                    17: "stale (model)",
                }.get(k % 20, "done")
    return intended


def printed_state(intended: str) -> str:
    return intended.split(" (")[0]


def resolved_model(env: dict) -> ModelRef:
    """The model the command pins (models:/ride-duration@production), as it resolves it."""
    from ride_duration.core.settings import Settings
    from ride_duration.model.resolve import resolve_model

    os.environ.update(
        {k: env[k] for k in ("MLFLOW_TRACKING_URI", "TRUSTED_MODEL_PREFIXES") if k in env}
    )
    settings = Settings.from_env()
    return resolve_model(
        settings.default_model_uri,
        settings.trusted_model_prefixes,
        tracking_uri=settings.tracking_uri,
    )


def publish_sets(
    root: str, input_uri: Callable[[str, str], str], intended: dict, ref: ModelRef
) -> None:
    """Publish the current sets of the done and stale months under `root`, as a scoring run
    publishes them (tests.support.outputs), with the input's size and version tag as the
    store gives them (another size for stale inputs; another model version for stale models)."""
    from ride_duration.core import storage
    from ride_duration.core.months import Month
    from tests.support.outputs import publish

    older = dataclasses.replace(
        ref,
        uri="models:/ride-duration/0",
        resolved_uri="models:/ride-duration/0",
        version="0",
        run_id="0" * 32,
    )

    def one(item: tuple[tuple[str, str], str]) -> None:
        (taxi_type, month), state = item
        info = storage.file_info(input_uri(taxi_type, month))
        if state == "stale (input)":
            info = {**info, "bytes": info["bytes"] + 1}
        model = older if state == "stale (model)" else ref
        publish(root, taxi_type, Month.parse(month), model, input_info=info)

    chosen = [(key, state) for key, state in intended.items() if state in PUBLISHED]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, chosen))


def record_runs(api: str, intended: dict) -> int:
    """A completed score run in Prefect for every month with a set, a failed one for the
    failed months: what the command reads of Prefect after a backfill."""

    def post(path: str, body: dict) -> dict:
        request = urllib.request.Request(
            f"{api}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        for attempt in range(10):
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as error:
                # A sqlite database busy with the server's own services answers 503, as
                # Prefect's client expects (it retries too).
                if error.code != 503 or attempt == 9:
                    raise
                time.sleep(min(0.2 * 2**attempt, 5))
        raise AssertionError("unreachable")

    flow_id = post("/flows/", {"name": SCORE_FLOW})["id"]
    runs = 0
    for (taxi_type, month), state in intended.items():
        if state in PUBLISHED:
            run_state = {"type": "COMPLETED", "name": "Completed"}
        elif state == "failed":
            run_state = {
                "type": "FAILED",
                "name": "Failed",
                "message": "Flow run encountered an exception: InputUnreadableError: the trip "
                "file is truncated or corrupt: download it again",
            }
        else:
            continue
        body = {"flow_id": flow_id, "name": f"score-{taxi_type}-{month}", "state": run_state}
        post("/flow_runs/", body)
        runs += 1
    return runs


def upload(files: dict, prefix: str) -> None:
    """The trip files into the moto bucket, under `prefix`."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    s3.create_bucket(Bucket=BUCKET)

    def one(path: Path) -> None:
        s3.upload_file(str(path), BUCKET, f"{prefix}/{path.name}")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, files.values()))


# --- reading what the command did -------------------------------------------------------------


def states_printed(output: str) -> Counter:
    """The count of each state in the table the command printed (its last lines)."""
    lines = output.splitlines()
    header = max(i for i, line in enumerate(lines) if re.match(r"taxi type\s+month\s+state", line))
    start, end = lines[header].index("state"), lines[header].index("model")
    return Counter(
        line[start:end].strip()
        for line in lines[header + 1 :]
        if line.split(" ", 1)[0] in TAXI_TYPES
    )


REQUEST = re.compile(r'"([A-Z]+) (\S+) HTTP/[\d.]+" (\d{3})')


def requests_logged(log: Path, offset: int) -> Counter:
    """(method, what, status) of each request an HTTP server logged after `offset`."""
    found = Counter()
    with log.open("rb") as handle:
        handle.seek(offset)
        text = handle.read().decode("utf-8", "replace")
    for method, target, status in REQUEST.findall(text):
        path, _, query = target.partition("?")
        if "list-type" in query or "prefix=" in query:
            what = "list"
        elif "_tripdata_" in path:
            what = "trip file"
        elif path.endswith("_manifest.json"):
            what = "manifest"
        elif path.endswith("predictions.parquet"):
            what = "current set"
        else:
            what = "other"
        found[(method, what, status)] += 1
    return found


def said(requests: Counter, keep: Callable[[str], bool] = lambda what: True) -> str:
    """The requests as "352 HEAD trip file 200, ..."."""
    return ", ".join(
        f"{n} {method} {what} {status}"
        for (method, what, status), n in sorted(requests.items())
        if keep(what)
    )


def trip_downloads(requests: Counter) -> int:
    """GETs of a trip file that the server answered with its bytes."""
    return sum(
        n
        for (method, what, status), n in requests.items()
        if method == "GET" and what == "trip file" and status in ("200", "206")
    )


def opened_locally(command: list[str], env: dict, trips: Path, root: Path) -> tuple[int, str]:
    """One more run, untimed, under strace: the trip files it opened, and what else of the
    output root it opened."""
    if shutil.which("strace") is None:
        return -1, "not checked (no strace)"
    trace = WORK / "local.strace"
    result = subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=open,openat,openat2", "-o", str(trace), *command],
        env=env,
        cwd=WORK,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        return -1, f"not checked (strace: {result.stderr.strip()[-200:]})"
    opened = Counter()  # every call that opens a path, whatever it answered
    for line in trace.read_text(errors="replace").splitlines():
        match = re.search(r'open(?:at2?)?\((?:[^,"]+, )?"([^"]+)"', line)
        if not match:
            continue
        path = match.group(1)
        if path.startswith(str(trips)) and path.endswith(".parquet"):
            opened["trip file"] += 1
        elif path.startswith(str(root)):
            opened[Path(path).name if Path(path).suffix else "folder"] += 1
    others = ", ".join(f"{n} {name}" for name, n in sorted(opened.items()) if name != "trip file")
    return opened["trip file"], f"opened {opened['trip file']} trip files; {others or 'nothing'}"


# --- measurement --------------------------------------------------------------------------------


@dataclasses.dataclass
class Configuration:
    """Where the command's trips and outputs are: its environment, and the log of the server
    it talks to (http and s3)."""

    name: str
    env: dict
    log: Path | None = None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--results", type=Path, help="write the report into this markdown file")
    args = parser.parse_args()
    started = time.perf_counter()

    CACHE.mkdir(parents=True, exist_ok=True)
    MODEL_CACHE.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PREFECT_", "MLFLOW_", "AWS_"))
        and key not in ("MODEL_URI", "RUN_ID", "INPUT_URI_TEMPLATE", "OUTPUT_ROOT")
    }
    base |= {
        "MLFLOW_TRACKING_URI": f"sqlite:///{MODEL_CACHE / 'mlflow.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "TRUSTED_MODEL_PREFIXES": f"models:/,runs:/,{MODEL_CACHE / 'mlruns'}",
    }
    print("preparing the trip files and the model ...", file=sys.stderr)
    files = trip_files()
    trips = CACHE / "trips"
    training = str(trips_folder() / FILE_NAME)
    registered_model(
        {**base, "INPUT_URI_TEMPLATE": training, "PREFECT_HOME": str(WORK / "train-home")}
    )
    ref = resolved_model(base)
    from ride_duration.data.layouts import lacking_fields
    from ride_duration.model.service import needed_fields

    fields = needed_fields(ref) or []
    scorable = {t for t in TAXI_TYPES if not lacking_fields(t, fields)}
    intended = intended_states(files, scorable)
    expected = Counter(printed_state(state) for state in intended.values())

    prefect_port, http_port, s3_port = free_port(), free_port(), free_port()
    api = f"http://127.0.0.1:{prefect_port}/api"
    s3_endpoint = f"http://127.0.0.1:{s3_port}"
    base |= {"PREFECT_API_URL": api, "PREFECT_HOME": str(WORK / "client-home")}
    command = [
        sys.executable,
        str(REPO / "backfill.py"),
        ",".join(TAXI_TYPES),
        START,
        END,
        "--status",
    ]
    samples: dict[str, list[float]] = {name: [] for name in CONFIGURATIONS}
    printed: dict[str, Counter] = {}
    requests: dict[str, Counter] = {}
    with ExitStack() as servers:
        print("starting Prefect, the http server and moto ...", file=sys.stderr)
        servers.enter_context(
            running(
                [
                    str(BIN / "prefect"),
                    *("server", "start", "--host", "127.0.0.1", "--port", str(prefect_port)),
                    "--analytics-off",
                ],
                env={**base, "PREFECT_HOME": str(WORK / "server-home")},
                ready=http_ok(f"{api}/health"),
                log=WORK / "prefect.log",
                timeout=300,
            )
        )
        http_log = WORK / "http.log"
        servers.enter_context(
            running(
                [sys.executable, "-m", "http.server", str(http_port), "--bind", "127.0.0.1"],
                env=base,
                cwd=trips,
                ready=http_ok(f"http://127.0.0.1:{http_port}/"),
                log=http_log,
            )
        )
        s3_env = {**AWS, "AWS_ENDPOINT_URL": s3_endpoint}
        s3_log = WORK / "moto.log"
        servers.enter_context(
            running(
                [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)],
                env={**base, **s3_env},
                ready=http_ok(f"{s3_endpoint}/moto-api/"),
                log=s3_log,
            )
        )
        os.environ.update(s3_env)  # for this process's uploads and publishing

        print("preparing the outputs and the score runs ...", file=sys.stderr)
        local_root, http_root = WORK / "local" / "out", WORK / "http" / "out"
        http_base = f"http://127.0.0.1:{http_port}"
        upload(files, "in")
        configurations = [
            Configuration(
                "local",
                {
                    **base,
                    "INPUT_URI_TEMPLATE": str(trips / FILE_NAME),
                    "OUTPUT_ROOT": str(local_root),
                },
            ),
            Configuration(
                "http",
                {
                    **base,
                    "INPUT_URI_TEMPLATE": f"{http_base}/{FILE_NAME}",
                    "OUTPUT_ROOT": str(http_root),
                },
                log=http_log,
            ),
            Configuration(
                "s3",
                {
                    **base,
                    **s3_env,
                    "INPUT_URI_TEMPLATE": f"s3://{BUCKET}/in/{FILE_NAME}",
                    "OUTPUT_ROOT": f"s3://{BUCKET}/out",
                },
                log=s3_log,
            ),
        ]
        for configuration in configurations:
            template = configuration.env["INPUT_URI_TEMPLATE"]

            def input_uri(taxi_type: str, month: str, template: str = template) -> str:
                year, number = month.split("-")
                return template.format(taxi_type=taxi_type, year=int(year), month=int(number))

            publish_sets(configuration.env["OUTPUT_ROOT"], input_uri, intended, ref)
        runs = record_runs(api, intended)

        for round_number in range(args.rounds):
            print(f"round {round_number + 1} of {args.rounds} ...", file=sys.stderr)
            for configuration in configurations:
                offset = configuration.log.stat().st_size if configuration.log else 0
                seconds, output = timed(command, configuration.env, WORK)
                samples[configuration.name].append(seconds)
                printed[configuration.name] = states_printed(output)
                if configuration.log:
                    time.sleep(0.5)  # the server's last log lines
                    requests[configuration.name] = requests_logged(configuration.log, offset)
        local = configurations[0]
        local_opened, local_said = opened_locally(command, local.env, trips, local_root)

    medians = {name: statistics.median(values) for name, values in samples.items()}
    downloads = {
        "local": local_opened,
        "http": trip_downloads(requests["http"]),
        "s3": trip_downloads(requests["s3"]),
    }
    months = len(intended)
    lines = [
        "## Backfill status: 600 months, as a user runs it",
        "",
        f"Machine: {machine()}. Versions: {versions()}.",
        "",
        f"Command: `python benchmarks/bench_status.py --rounds {args.rounds}`, "
        f"{datetime.now():%Y-%m-%d}, {time.perf_counter() - started:.0f} s in all. Timed: "
        f"`python backfill.py {','.join(TAXI_TYPES)} {START} {END} --status`; "
        f"{len(files)} small trip files (the months the TLC published), {runs} score runs "
        f"in Prefect.",
        "",
        *table(
            [
                "configuration",
                "months",
                "seconds (median)",
                "all rounds",
                *STATES,
                "trip files downloaded",
            ],
            (
                [
                    name,
                    sum(printed[name].values()),
                    f"{medians[name]:.2f}",
                    ", ".join(f"{v:.2f}" for v in samples[name]),
                    *(printed[name].get(state, 0) for state in STATES),
                    "not checked" if downloads[name] < 0 else downloads[name],
                ]
                for name in CONFIGURATIONS
            ),
            align="lrrl" + "r" * (len(STATES) + 1),
        ),
        "",
        "Seconds: wall time of a fresh process, from its start to its exit, with the Prefect "
        "server already running and the model registered by train.py in a sqlite store; median "
        f"of {args.rounds} rounds, the configurations interleaved. The states are those the "
        "last round printed.",
        "",
        "What the last round read of the trip files and outputs:",
        "",
        f"- local (strace of one more run): {local_said};",
        f"- http (the server's log): {said(requests['http'], lambda w: w == 'trip file')};",
        f"- s3 (moto's log): {said(requests['s3'], lambda w: w != 'other')}.",
    ]
    checks = []
    for name in CONFIGURATIONS:
        checks.append(
            (
                f"{name}: {months} months in at most {TARGET_SECONDS} s",
                f"{medians[name]:.2f}",
                medians[name] <= TARGET_SECONDS,
            )
        )
    for name in CONFIGURATIONS:
        checks.append(
            (
                f"{name}: no trip file downloaded",
                "not checked" if downloads[name] < 0 else str(downloads[name]),
                downloads[name] == 0,
            )
        )
    for name in CONFIGURATIONS:
        differ = [
            f"{state} {printed[name].get(state, 0)} (prepared {expected.get(state, 0)})"
            for state in STATES
            if printed[name].get(state, 0) != expected.get(state, 0)
        ]
        checks.append(
            (
                f"{name}: it printed the states prepared",
                "; ".join(differ) or "yes",
                not differ,
            )
        )
    lines += ["", *check_table(checks)]
    publish("\n".join(lines) + "\n", args.results, "status")
    return 0 if all(met for _, _, met in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
