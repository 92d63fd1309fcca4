"""Benchmark of whole commands, as a user runs them: `python score.py green 2021 3` and the rest.

    python benchmarks/bench_process.py [--rounds 3] [--results benchmarks/RESULTS.md]

Every measurement is a fresh process timed from outside (wall seconds), on a real green month
(2021-03 from TLC_DATA_DIR, else a generated one), with the model `train.py` registers in a
sqlite store (trained once, cached in benchmarks/.cache/process):
  - score.py with no PREFECT_API_URL and a fresh PREFECT_HOME: the first command starts the
    local Prefect server (creating its database), the second reuses it;
  - score.py with PREFECT_API_URL at a `prefect server` that is already running;
  - the course's batch script (benchmarks/course/batch.py), with the model as `runs:/RUN/model`
    and as a local artifact folder;
  - `score.py --help`.
The configurations are interleaved round by round; the table gives medians. The breakdown of
the server-running run comes from its manifest and log: where its seconds go.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.bench import machine, tlc_dir, versions  # noqa: E402 - after sys.path
from benchmarks.results import check_table, publish, table  # noqa: E402 - after sys.path
from tests.support.servers import free_port, http_ok, running  # noqa: E402 - after sys.path

BIN = Path(sys.executable).parent
CACHE = REPO / "benchmarks" / ".cache" / "process"
WORK = REPO / "benchmarks" / ".work" / "process"
MONTH = ("green", "2021", "3")


def trips_folder() -> Path:
    """Real green 2021-01..03 (generated ones without TLC_DATA_DIR)."""
    folder = tlc_dir()
    if folder is not None:
        return folder
    from tests.support.tlc_fake import file_name, make_trips, write_trips

    generated = CACHE / "trips"
    for month in (1, 2, 3):
        path = generated / file_name("green", 2021, month)
        if not path.exists():
            write_trips(path, make_trips("green", 2021, month, rows=80_000))
    return generated


def registered_model(env: dict) -> tuple[str, str]:
    """The run id and artifact folder of the model `train.py` registered (trained once)."""
    note = CACHE / "model.json"
    if not note.exists():
        result = subprocess.run(
            [sys.executable, str(REPO / "train.py"), "green", "2021", "1"],
            env=env,
            cwd=CACHE,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(result.stderr[-3000:])
        run_id = re.search(r"run_id: (\w+)", result.stdout).group(1)
        import sqlite3

        with sqlite3.connect(CACHE / "mlflow.db") as db:
            [(location,)] = db.execute(
                "SELECT storage_location FROM model_versions WHERE run_id = ?", (run_id,)
            ).fetchall()
        note.write_text(json.dumps({"run_id": run_id, "location": location}))
    content = json.loads(note.read_text())
    return content["run_id"], content["location"]


def timed(command: list[str], env: dict, cwd: Path) -> tuple[float, str]:
    """Wall seconds of one process, and what it printed."""
    started = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{command} failed:\n{result.stdout[-2000:]}{result.stderr[-3000:]}")
    return seconds, result.stdout + result.stderr


def stop_server(env: dict) -> None:
    subprocess.run([str(BIN / "prefect"), "server", "stop"], env=env, capture_output=True)


def breakdown(log: str, wall: float, output_root: Path) -> list[tuple[str, float]]:
    """Where a score run's seconds go: process start to flow, its stages, exit.

    From the month's `_manifest.json` (beside its current set), whose seconds are those of
    the stages up to the manifest: publishing the set comes after, in the flow's remainder.
    """
    manifest = next(output_root.rglob("_manifest.json"))
    seconds = json.loads(manifest.read_text())["seconds"]
    stamps = re.findall(r"^(\d\d:\d\d:\d\d\.\d+) \|", log, flags=re.MULTILINE)
    first, last = (datetime.strptime(s, "%H:%M:%S.%f") for s in (stamps[0], stamps[-1]))
    in_flow = (last - first).total_seconds()
    staged = sum(seconds.get(k, 0) for k in ("model_resolve", "model_load", "total"))
    return [
        ("start, imports and Prefect until the flow begins, and exit", wall - in_flow),
        ("model resolve (registry)", seconds.get("model_resolve", 0)),
        ("model load", seconds.get("model_load", 0)),
        *(
            (f"month: {k}", seconds.get(k, 0))
            for k in ("read", "prepare", "ride_ids", "predict", "write", "profile")
        ),
        ("publishing the set, Prefect tasks, logs and artifact within the flow", in_flow - staged),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--results", type=Path, help="write the report into this markdown file")
    args = parser.parse_args()
    started = time.perf_counter()

    CACHE.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    trips = trips_folder()
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PREFECT_", "MLFLOW_")) and key != "MODEL_URI"
    }
    base |= {
        "MLFLOW_TRACKING_URI": f"sqlite:///{CACHE / 'mlflow.db'}",
        "INPUT_URI_TEMPLATE": str(trips / "{taxi_type}_tripdata_{year:04d}-{month:02d}.parquet"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # The store keeps its artifacts beside it, not in the folder the commands run in.
        "TRUSTED_MODEL_PREFIXES": f"models:/,runs:/,{CACHE / 'mlruns'}",
    }
    run_id, location = registered_model({**base, "PREFECT_HOME": str(WORK / "train-home")})
    score = [sys.executable, str(REPO / "score.py"), *MONTH]
    naive = [sys.executable, str(REPO / "benchmarks" / "course" / "batch.py"), *MONTH]
    naive_env = {**base, "RUN_ID": run_id}

    port = free_port()
    server_env = {**base, "PREFECT_HOME": str(WORK / "server-home")}
    api = f"http://127.0.0.1:{port}/api"
    samples: dict[str, list[float]] = {}
    logs: dict[str, str] = {}
    server = ["server", "start", "--host", "127.0.0.1", "--port", str(port), "--analytics-off"]
    with running(
        [str(BIN / "prefect"), *server],
        env=server_env,
        ready=http_ok(f"{api}/health"),
        log=WORK / "server.log",
        timeout=300,
    ):
        for round_number in range(args.rounds):
            print(f"round {round_number + 1} of {args.rounds} ...", file=sys.stderr)
            home = WORK / f"home-{round_number}"
            local = {
                **base,
                "PREFECT_HOME": str(home),
                "LOCAL_PREFECT_PORT": str(free_port()),
                "OUTPUT_ROOT": str(WORK / f"local-{round_number}"),
            }
            runs = [
                ("score.py, no PREFECT_API_URL, first run (starts the server)", score, local),
                ("score.py, no PREFECT_API_URL, next run (reuses it)", score, local),
                (
                    "score.py, PREFECT_API_URL at a running server",
                    score,
                    {
                        **base,
                        "PREFECT_API_URL": api,
                        "OUTPUT_ROOT": str(WORK / f"b-{round_number}"),
                    },
                ),
                (
                    "course script, model runs:/RUN/model",
                    naive,
                    {**naive_env, "MODEL_URI": f"runs:/{run_id}/model"},
                ),
                (
                    "course script, model from its artifact folder",
                    naive,
                    {**naive_env, "MODEL_URI": location},
                ),
                ("score.py --help", [*score[:2], "--help"], base),
            ]
            try:
                for name, command, env in runs:
                    seconds, output = timed(command, env, WORK)
                    samples.setdefault(name, []).append(seconds)
                    logs[name] = output
            finally:
                stop_server(local)
        server_run = "score.py, PREFECT_API_URL at a running server"
        last_b = WORK / f"b-{args.rounds - 1}"
        parts = breakdown(logs[server_run], samples[server_run][-1], last_b)

    medians = {name: statistics.median(values) for name, values in samples.items()}
    naive_time = medians["course script, model runs:/RUN/model"]
    lines = [
        "## Whole commands, as a user runs them",
        "",
        f"Machine: {machine()}. Versions: {versions()}.",
        "",
        f"Command: `python benchmarks/bench_process.py --rounds {args.rounds}`, "
        f"{datetime.now():%Y-%m-%d}, {time.perf_counter() - started:.0f} s in all. Green 2021-03 "
        f"({'real' if tlc_dir() else 'generated'}), the model train.py registers in a sqlite "
        f"store; wall seconds of each process, median of {args.rounds} interleaved rounds.",
        "",
        *table(
            ["command", "seconds (median)", "all rounds", "vs course script (runs:/)"],
            (
                [
                    name,
                    f"{medians[name]:.2f}",
                    ", ".join(f"{v:.2f}" for v in values),
                    f"{medians[name] / naive_time:.2f}x",
                ]
                for name, values in samples.items()
            ),
            align="lrlr",
        ),
    ]
    lines += [
        "",
        f"Where the seconds of the last `{server_run}` go:",
        "",
        "| part | seconds |",
        "|---|---:|",
        *(f"| {name} | {value:.2f} |" for name, value in parts),
    ]
    checks = [
        ("a server running: at most 0.9x the course script", medians[server_run] / naive_time, 0.9),
        (
            "a server running, with the compiled forest: at most 0.7x the course script",
            medians[server_run] / naive_time,
            0.7,
        ),
        (
            "no PREFECT_API_URL, every run after the first: at most 1.1x the course script",
            medians["score.py, no PREFECT_API_URL, next run (reuses it)"] / naive_time,
            1.1,
        ),
        ("score.py --help under 1.5 s", medians["score.py --help"], 1.5),
    ]
    lines += ["", *check_table((name, f"{v:.2f}", v <= bound) for name, v, bound in checks)]
    publish("\n".join(lines) + "\n", args.results, "process")
    return 0


if __name__ == "__main__":
    sys.exit(main())
