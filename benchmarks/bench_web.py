"""Benchmark of the web service beside the course's, on the same machine, model and load.

    python benchmarks/bench_web.py [--requests 2000] [--clients 8] [--results benchmarks/RESULTS.md]

Each service runs under gunicorn as a real process on 127.0.0.1:
  (a) product: `gunicorn --bind ... predict:app` from the project folder (gunicorn.conf.py:
      one worker per core, 4 threads each, the model loaded once before forking);
  (b) course:  the course's Flask app (benchmarks/course/web.py: mlflow.pyfunc, the forest's
      n_jobs=-1 as trained, one dict per request) with the course's command, gunicorn's
      defaults (one sync worker);
  (c) course, sized: the same app with (a)'s workers and threads, to separate the app from
      gunicorn's sizing.
`--clients` threads POST the course's payload (rides of a real month) as fast as answers come;
latency is measured per request by the client. Startup is the time to the first answer of
/ready (/predict for the course, which has no health check). The model is benchmarks/bench.py's
RandomForest (green 2021-01).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.bench import machine, train_model, versions  # noqa: E402 - after sys.path
from benchmarks.results import check_table, publish, table  # noqa: E402 - after sys.path
from tests.support.servers import free_port, stop  # noqa: E402 - after sys.path

BIN = Path(sys.executable).parent
RIDE = {"PULocationID": 130, "DOLocationID": 205, "trip_distance": 3.66}


def rides(count: int) -> list[dict]:
    """Rides of real green 2021-03 trips (generated ones without TLC_DATA_DIR)."""
    from tests.support.rides import as_rides, prepared

    folder = os.environ.get("TLC_DATA_DIR")
    if folder and Path(folder, "green_tripdata_2021-03.parquet").is_file():
        from ride_duration.core.months import Month
        from ride_duration.data.sources import read_trips

        path = Path(folder, "green_tripdata_2021-03.parquet")
        trips = read_trips(str(path), "green", Month(2021, 3), 500_000).table
    else:
        trips = prepared(2021, 3, count * 2)
    return as_rides(trips.slice(0, count))


def post(url: str, body: dict) -> float:
    """Seconds for one POST answered 200."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()
        assert response.status == 200
    return time.perf_counter() - started


def start(command: list[str], cwd: Path, env: dict, probe: str, log: Path) -> tuple:
    """Start a service; return it and the seconds until `probe` first answers."""
    started = time.perf_counter()
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{command} exited:\n{log.read_text()[-3000:]}")
        try:
            if probe.endswith("/predict"):
                post(probe, RIDE)
            else:
                urllib.request.urlopen(probe, timeout=2).read()
            return process, time.perf_counter() - started
        except (OSError, urllib.error.URLError):
            time.sleep(0.1)


def load(url: str, payloads: list[dict], clients: int) -> dict:
    """Latencies and throughput of `payloads` sent by `clients` threads at once."""
    for body in payloads[:50]:  # warm up: first requests pay lazy imports and caches
        post(url, body)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        latencies = np.array(list(pool.map(lambda body: post(url, body), payloads)))
    wall = time.perf_counter() - started
    return {
        "p50_ms": float(np.percentile(latencies, 50) * 1000),
        "p99_ms": float(np.percentile(latencies, 99) * 1000),
        "rps": len(payloads) / wall,
    }


def one_client(url: str, payloads: list[dict]) -> float:
    """Median latency with a single client (no queueing behind other requests)."""
    return float(np.median([post(url, body) for body in payloads]) * 1000)


def batches(url: str, payloads: list[dict], rounds: int = 40) -> tuple[float, float]:
    """Median ms of `POST /predict/batch` with 1,000 rides: clean, and with three values given
    as numeric text (valid, but of another type than the rest: checked one by one)."""
    clean = {"rides": payloads[:1000]}
    mixed = {"rides": [dict(ride) for ride in payloads[:1000]]}
    for i, field in ((10, "PULocationID"), (500, "DOLocationID"), (900, "trip_distance")):
        mixed["rides"][i][field] = str(mixed["rides"][i][field])
    medians = []
    for body in (clean, mixed):
        times = [post(url, body) for _ in range(rounds)]
        medians.append(float(np.median(times)) * 1000)
    return medians[0], medians[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--results", type=Path, help="write the report into this markdown file")
    args = parser.parse_args()

    model_dir = train_model()
    payloads = rides(args.requests)
    workers = str(os.cpu_count() or 1)
    base = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    ours_env = {
        **base,
        "MODEL_URI": str(model_dir),
        "TRUSTED_MODEL_PREFIXES": str(model_dir),
    }
    course_env = {**base, "MODEL_LOCATION": str(model_dir)}
    logs = REPO / "benchmarks" / ".work"
    logs.mkdir(parents=True, exist_ok=True)
    runs = {
        "(a) product": (
            [str(BIN / "gunicorn"), "--bind", "127.0.0.1:{port}", "predict:app"],
            REPO,
            ours_env,
            "/ready",
        ),
        "(b) course, course's command": (
            [str(BIN / "gunicorn"), "--no-control-socket", "--bind=127.0.0.1:{port}", "web:app"],
            REPO / "benchmarks" / "course",
            course_env,
            "/predict",
        ),
        "(d) product, tracking server down, MODEL_LOCATION": (
            [str(BIN / "gunicorn"), "--bind", "127.0.0.1:{port}", "predict:app"],
            REPO,
            {
                **base,
                "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
                "MODEL_LOCATION": str(model_dir),
                "TRUSTED_MODEL_PREFIXES": f"models:/,runs:/,{model_dir}",
            },
            "/ready",
        ),
        "(c) course, (a)'s workers and threads": (
            [
                *(str(BIN / "gunicorn"), "--no-control-socket", "--bind=127.0.0.1:{port}"),
                *("--workers", workers, "--threads", "4", "web:app"),
            ],
            REPO / "benchmarks" / "course",
            course_env,
            "/predict",
        ),
    }
    results = {}
    started = time.perf_counter()
    for name, (command, cwd, env, probe) in runs.items():
        port = free_port()
        command = [part.replace("{port}", str(port)) for part in command]
        url = f"http://127.0.0.1:{port}"
        print(f"measuring {name} ...", file=sys.stderr)
        process, startup = start(command, cwd, env, url + probe, logs / "web.log")
        try:
            result = load(url + "/predict", payloads, args.clients)
            result["single_ms"] = one_client(url + "/predict", payloads[:300])
            result["startup_s"] = startup
            if name == "(a) product":
                result["batch_ms"], result["mixed_batch_ms"] = batches(
                    url + "/predict/batch", payloads
                )
        finally:
            stop(process)
        results[name] = result

    ours, course = results["(a) product"], results["(b) course, course's command"]
    lines = [
        "## Web service: `POST /predict`",
        "",
        f"Machine: {machine()}. Versions: {versions()}.",
        "",
        f"Command: `python benchmarks/bench_web.py --requests {args.requests} --clients "
        f"{args.clients}`, {datetime.now():%Y-%m-%d}, {time.perf_counter() - started:.0f} s in "
        f"all. {args.requests:,} requests of real rides from {args.clients} client threads, "
        "after 50 to warm up; the one-client column is the median of 300 requests in a row.",
        "",
        *table(
            ["service", "p50 ms", "p99 ms", "requests/s", "one client p50 ms", "startup s"],
            (
                [
                    name,
                    f"{r['p50_ms']:.1f}",
                    f"{r['p99_ms']:.1f}",
                    f"{r['rps']:,.0f}",
                    f"{r['single_ms']:.1f}",
                    f"{r['startup_s']:.1f}",
                ]
                for name, r in results.items()
            ),
        ),
    ]
    lines += [
        "",
        f"`POST /predict/batch` of 1,000 rides, median of 40: {ours['batch_ms']:.1f} ms; with "
        f"three of their values as numeric text: {ours['mixed_batch_ms']:.1f} ms.",
    ]
    mixed = ours["mixed_batch_ms"] / ours["batch_ms"]
    p50 = ours["p50_ms"] / course["p50_ms"]
    p99 = ours["p99_ms"] / ours["p50_ms"]
    rps = ours["rps"] / course["rps"]
    startup = results["(d) product, tracking server down, MODEL_LOCATION"]["startup_s"]
    checks = [
        ("p50 at most 1/4 of the course's", f"{p50:.2f}", p50 <= 0.25),
        ("p50 at most 1/20 of the course's (compiled forest)", f"{p50:.2f}", p50 <= 0.05),
        ("p99 under 4x its own p50", f"{p99:.2f}", p99 < 4),
        ("requests/s at least 3x the course's", f"{rps:.2f}", rps >= 3),
        ("startup to /ready, tracking server down (s)", f"{startup:.2f}", startup < 15),
        ("a batch with a few text values at most 1.5x a clean one", f"{mixed:.2f}", mixed <= 1.5),
    ]
    lines += ["", *check_table(checks)]
    publish("\n".join(lines) + "\n", args.results, "web")
    return 0


if __name__ == "__main__":
    sys.exit(main())
