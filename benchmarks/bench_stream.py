"""Benchmark of the stream handler beside the course's Lambda, on the same machine and model.

    python benchmarks/bench_stream.py [--results benchmarks/RESULTS.md]

A moto server process is the Kinesis here (input records are built as Lambda hands them over;
predictions are written to it, or not with TEST_RUN=True). Each handler runs in its own fresh
process, as a Lambda container does:
  (a) product: lambda_function.lambda_handler (one vectorised predict, put_records of 500);
  (b) course:  benchmarks/course/lambda_function.py (mlflow.pyfunc, the forest's n_jobs=-1,
      one predict and one put_record per record).
Cold start is the first event of a fresh process: import, model load and one record. Then
batches of 1, 100 and 1,000 records of real rides go through the handler, several times each;
records/s is the batch size over the median time of a batch.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.bench import machine, train_model, versions  # noqa: E402 - after sys.path
from benchmarks.bench_web import rides  # noqa: E402 - after sys.path
from benchmarks.results import check_table, publish  # noqa: E402 - after sys.path
from tests.support.servers import free_port, http_ok, running  # noqa: E402 - after sys.path

BIN = Path(sys.executable).parent
SIZES = {1: 30, 100: 7, 1000: 3}  # batch size: batches timed


def event(batch: list[dict], first: int = 0) -> dict:
    """Kinesis records as Lambda hands them to a function."""
    return {
        "Records": [
            {
                "kinesis": {
                    "partitionKey": str(first + i),
                    "sequenceNumber": str(first + i),
                    "data": base64.b64encode(
                        json.dumps({"ride": ride, "ride_id": first + i}).encode()
                    ).decode(),
                },
                "eventSource": "aws:kinesis",
            }
            for i, ride in enumerate(batch)
        ]
    }


def child(kind: str, rides_file: Path) -> dict:
    """In a fresh process: the cold start, then batches of each size (one JSON line out)."""
    payload = json.loads(rides_file.read_text())
    started = time.perf_counter()
    if kind == "product":
        import lambda_function as handler_module
    else:
        sys.path.insert(0, str(REPO / "benchmarks" / "course"))
        import lambda_function as handler_module  # the course's, from benchmarks/course
    handler_module.lambda_handler(event(payload[:1]), None)
    result = {"cold_start_s": time.perf_counter() - started, "sizes": {}}
    for size, repeats in SIZES.items():
        seconds = []
        for repeat in range(repeats):
            batch = event(payload[:size], first=(repeat + 1) * 10_000)
            clock = time.perf_counter()
            handler_module.lambda_handler(batch, None)
            seconds.append(time.perf_counter() - clock)
        result["sizes"][str(size)] = float(np.median(seconds))
    return result


def measure(kind: str, rides_file: Path, env: dict) -> dict:
    command = [sys.executable, __file__, "--run", kind, "--rides", str(rides_file)]
    cwd = REPO if kind == "product" else REPO / "benchmarks" / "course"
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, help="write the report into this markdown file")
    parser.add_argument("--run", choices=["product", "course"], help=argparse.SUPPRESS)
    parser.add_argument("--rides", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        print(json.dumps(child(args.run, args.rides)))
        return 0

    started = time.perf_counter()
    model_dir = train_model()
    work = REPO / "benchmarks" / ".work"
    work.mkdir(parents=True, exist_ok=True)
    rides_file = work / "stream-rides.json"
    rides_file.write_text(json.dumps(rides(1000)))
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    base = {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "MODEL_URI": str(model_dir),
        "MODEL_LOCATION": str(model_dir),
        "TRUSTED_MODEL_PREFIXES": str(model_dir),
        "PREDICTIONS_STREAM_NAME": "ride_predictions",
    }
    results = {}
    with running(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        env=base,
        ready=http_ok(f"{endpoint}/moto-api/"),
        log=work / "moto.log",
    ):
        import boto3

        kinesis = boto3.client(
            "kinesis",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
        kinesis.create_stream(StreamName="ride_predictions", ShardCount=2)
        for kind in ("product", "course"):
            for writes in (True, False):
                print(f"measuring {kind}, writes {writes} ...", file=sys.stderr)
                env = {**base, "TEST_RUN": "False" if writes else "True"}
                results[(kind, writes)] = measure(kind, rides_file, env)

    lines = [
        "## Stream: the Kinesis handler",
        "",
        f"Machine: {machine()}. Versions: {versions()}.",
        "",
        f"Command: `python benchmarks/bench_stream.py`, {datetime.now():%Y-%m-%d}, "
        f"{time.perf_counter() - started:.0f} s in all. Kinesis: a moto server process on "
        "127.0.0.1. Records/s: batch size / median seconds per batch "
        f"({', '.join(f'{n} batches of {s}' for s, n in SIZES.items())}). Cold start: from "
        "importing the handler's module to the end of its first event (one record), in a fresh "
        "process: imports, model load and, with writes, the Kinesis client and its first put.",
        "",
        "| handler | writes | cold start s | 1 record: rec/s | 100: rec/s | 1,000: rec/s "
        "| 1,000: s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for (kind, writes), r in results.items():
        per = r["sizes"]
        label = "(a) product" if kind == "product" else "(b) course"
        lines.append(
            f"| {label} | {'put to Kinesis' if writes else 'TEST_RUN'} | {r['cold_start_s']:.2f} | "
            f"{1 / per['1']:,.0f} | {100 / per['100']:,.0f} | {1000 / per['1000']:,.0f} | "
            f"{per['1000']:.3f} |"
        )
    ours, course = results[("product", True)], results[("course", True)]
    dry = results[("product", False)]
    # Import and model load: the TEST_RUN process, which makes no Kinesis client; with writes
    # the cold start also imports boto3, makes its client and puts the first record.
    cold = dry["cold_start_s"]
    speedup = course["sizes"]["100"] / ours["sizes"]["100"]
    written, dry_run = ours["sizes"]["1000"], dry["sizes"]["1000"]
    checks = [
        (
            "a batch of 100, writes included: times faster than the course's loop (>= 20)",
            f"{speedup:.1f}",
            speedup >= 20,
        ),
        ("a batch of 1,000, writes included, in under 0.5 s", f"{written:.3f}", written < 0.5),
        (
            "a batch of 1,000, writes excluded (TEST_RUN), in under 0.1 s",
            f"{dry_run:.3f}",
            dry_run < 0.1,
        ),
        ("cold start, import and model load (TEST_RUN), in under 1 s", f"{cold:.2f}", cold < 1),
    ]
    lines += ["", *check_table(checks)]
    publish("\n".join(lines) + "\n", args.results, "stream")
    return 0


if __name__ == "__main__":
    sys.exit(main())
