"""Benchmark of the serving install beside the full one, in the same run, on the same model.

    python benchmarks/bench_serving.py [--before REV] [--results benchmarks/RESULTS.md]

Installs: the full one (`.venv`, every role) and the serving one (`make serving-env`,
SERVING_VENV: numpy, flask, gunicorn, boto3, awslambdaric, prometheus-client). With `--before
REV`, the full install also runs the code of commit REV (a git worktree), to show what the
serving work changed for the full install too. Measured, each in fresh processes:
  - the environment on disk: its site-packages, and the whole virtual environment;
  - the Lambda handler's first answer: a fresh process imports lambda_function, loads the
    compiled model from a local folder and answers one record (TEST_RUN); seconds from
    starting the process to its answer, and its peak RSS, median of --rounds interleaved rounds;
  - the web service: `gunicorn predict:app` (gunicorn.conf.py: a worker per core, 4 threads)
    on 127.0.0.1, each worker's RSS and PSS after --requests requests from --clients threads,
    and their p50, p99 and requests per second.
The model is benchmarks/bench.py's RandomForest (green 2021-01), compiled.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.bench import WORK, machine, train_model, versions  # noqa: E402 - after sys.path
from benchmarks.bench_stream import event  # noqa: E402 - after sys.path
from benchmarks.bench_web import load, rides, start  # noqa: E402 - after sys.path
from benchmarks.results import check_table, publish, table  # noqa: E402 - after sys.path
from tests.support.servers import free_port, stop  # noqa: E402 - after sys.path

RIDE = {"PULocationID": 130, "DOLocationID": 205, "trip_distance": 3.66}
# A fresh handler process, given one Kinesis event (its first argument) as Lambda hands it over.
# It reports where its time went (numpy's import apart: it is most of it) and its peak RSS
# (VmHWM counts from exec; the parent's rusage would count the fork before it).
FIRST_ANSWER = """
import time
started = time.perf_counter()
import numpy
numpy_done = time.perf_counter()
import json, sys
import lambda_function
imported = time.perf_counter()
answer = lambda_function.lambda_handler(json.loads(sys.argv[1]), None)
answered = time.perf_counter()
assert answer["batchItemFailures"] == [], answer
status = open("/proc/self/status").read().split("VmHWM:")[1].split()[0]
print(json.dumps({
    "numpy_s": numpy_done - started,
    "imports_s": imported - numpy_done,
    "load_and_answer_s": answered - imported,
    "peak_mb": int(status) / 1024,
    # to two decimals, as the services answer since they round: older code answers every digit
    "answer": repr(round(answer["predictions"][0]["prediction"]["ride_duration"], 2)),
}), flush=True)
"""


def disk_mb(folder: Path) -> float:
    """MB of the files below `folder` (links not followed)."""
    total = 0
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                total += os.lstat(path).st_size
    return total / 1e6


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3.*/site-packages"))


def first_answer(python: Path, code_dir: Path, model_dir: Path) -> dict:
    """One fresh handler process: its wall seconds, where they went, its peak RSS, its answer."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(WORK),
        "TEST_RUN": "True",
        "MODEL_URI": str(model_dir),
        "TRUSTED_MODEL_PREFIXES": str(model_dir),
    }
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(python), "-c", FIRST_ANSWER, json.dumps(event([RIDE]))],
        cwd=code_dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline()  # the answer: what the process does after is not waited on
    seconds = time.perf_counter() - started
    if process.wait() != 0:
        raise RuntimeError(f"{python} failed:\n{process.stderr.read()[-3000:]}")
    return {"wall_s": seconds, **json.loads(line)}


def worker_memory(master: int) -> list[tuple[float, float]]:
    """RSS and PSS (MB) of each gunicorn worker (the master's children)."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    found = []
    for pid in children:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        values = {line.split(":")[0]: int(line.split()[1]) for line in rollup[1:]}
        found.append((values["Rss"] / 1024, values["Pss"] / 1024))
    return found


def web(bin_dir: Path, code_dir: Path, model_dir: Path, payloads: list, clients: int) -> dict:
    """One gunicorn of `bin_dir` serving `code_dir`: its workers' memory and its load figures."""
    port = free_port()
    env = {
        **os.environ,
        "MODEL_URI": str(model_dir),
        "TRUSTED_MODEL_PREFIXES": str(model_dir),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }
    command = [str(bin_dir / "gunicorn"), "--bind", f"127.0.0.1:{port}", "predict:app"]
    url = f"http://127.0.0.1:{port}"
    process, startup = start(command, code_dir, env, url + "/ready", WORK / "serving-web.log")
    try:
        result = load(url + "/predict", payloads, clients)
        memory = worker_memory(process.pid)
    finally:
        stop(process)
    result["startup_s"] = startup
    result["rss_mb"] = max(rss for rss, _ in memory)
    result["pss_mb"] = max(pss for _, pss in memory)
    result["workers"] = len(memory)
    return result


def breakdown(result: dict) -> list[str]:
    """A first answer's seconds: from starting the process to its answer, what it timed
    itself, and the rest (the interpreter's start, the answer's way out)."""
    parts = [result[f"first_{key}"] for key in ("numpy_s", "imports_s", "load_and_answer_s")]
    whole = result["first_wall_s"]
    return [f"{value:.3f}" for value in (whole, *parts, whole - sum(parts))]


def before_tree(rev: str) -> Path:
    """A worktree of commit `rev` (the code before), made once under benchmarks/.work."""
    target = WORK / f"before-{rev}"
    if not target.exists():
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(target), rev],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--before", help="also run this commit's code on the full install")
    parser.add_argument("--results", type=Path, help="write the report into this markdown file")
    args = parser.parse_args()
    started = time.perf_counter()
    WORK.mkdir(parents=True, exist_ok=True)

    full_venv = Path(sys.prefix)
    serving_venv = Path(os.environ.get("SERVING_VENV") or REPO / ".venv-serving")
    if not (serving_venv / ".installed").is_file():
        parser.error(f"no serving install at {serving_venv}: run make serving-env")
    model_dir = train_model()
    runs = {
        "full install": (full_venv, REPO),
        "serving install": (serving_venv, REPO),
    }
    if args.before:
        runs[f"full install, code of {args.before}"] = (full_venv, before_tree(args.before))

    # First answers before anything big is loaded here: forking a large process costs time.
    handlers: dict[str, list[dict]] = {name: [] for name in runs}
    for _ in range(args.rounds):  # interleaved, so that a busy moment hits every run alike
        for name, (venv, code) in runs.items():
            handlers[name].append(first_answer(venv / "bin" / "python", code, model_dir))
    answers = {run["answer"] for results in handlers.values() for run in results}
    assert len(answers) == 1, f"the installs answer differently: {answers}"

    payloads = rides(args.requests)
    results = {}
    for name, (venv, code) in runs.items():
        print(f"measuring {name} ...", file=sys.stderr)
        results[name] = web(venv / "bin", code, model_dir, payloads, args.clients)
        for key in ("wall_s", "numpy_s", "imports_s", "load_and_answer_s", "peak_mb"):
            results[name][f"first_{key}"] = statistics.median(r[key] for r in handlers[name])
        results[name]["site_mb"] = disk_mb(site_packages(venv))
        results[name]["venv_mb"] = disk_mb(venv)

    full, serving = results["full install"], results["serving install"]
    before = f" --before {args.before}" if args.before else ""
    lines = [
        "## Serving install: web service and Lambda handler",
        "",
        f"Machine: {machine()}. Versions: {versions()}.",
        "",
        f"Command: `python benchmarks/bench_serving.py{before}`, "
        f"{datetime.now():%Y-%m-%d}, {time.perf_counter() - started:.0f} s in all. First "
        f"answer: a fresh process imports lambda_function, loads the compiled model from a local "
        f"folder and answers one record with TEST_RUN, median of {args.rounds} interleaved "
        "rounds (seconds from starting the process to its answer, and its peak RSS). Web: "
        f"`gunicorn predict:app`, "
        f"{args.requests:,} requests of real rides from {args.clients} client threads after 50 "
        "to warm up; worker memory is the largest worker's, after the load. Every run answered "
        f"the same ride with the same bits ({answers.pop()} minutes).",
        "",
        *table(
            [
                "install",
                "site-packages MB",
                "venv MB",
                "first answer s",
                "first answer RSS MB",
                "worker RSS MB",
                "worker PSS MB",
                "p50 ms",
                "p99 ms",
                "requests/s",
                "startup s",
            ],
            (
                [
                    name,
                    f"{r['site_mb']:,.0f}",
                    f"{r['venv_mb']:,.0f}",
                    f"{r['first_wall_s']:.3f}",
                    f"{r['first_peak_mb']:.0f}",
                    f"{r['rss_mb']:.0f}",
                    f"{r['pss_mb']:.0f}",
                    f"{r['p50_ms']:.1f}",
                    f"{r['p99_ms']:.1f}",
                    f"{r['rps']:,.0f}",
                    f"{r['startup_s']:.1f}",
                ]
                for name, r in results.items()
            ),
        ),
        "",
        "Where a first answer's seconds go (medians): the interpreter's start is the time to "
        "the answer less what the process timed itself.",
        "",
        *table(
            [
                "install",
                "to the answer",
                "import numpy",
                "other imports",
                "load and answer",
                "interpreter start",
            ],
            ([name, *breakdown(r)] for name, r in results.items()),
        ),
    ]
    smaller = full["site_mb"] / serving["site_mb"]
    checks = [
        (
            "serving site-packages at most 250 MB",
            f"{serving['site_mb']:.0f}",
            serving["site_mb"] <= 250,
        ),
        ("serving site-packages at least 5x smaller than the full", f"{smaller:.1f}", smaller >= 5),
        (
            "Lambda first answer at most 0.15 s",
            f"{serving['first_wall_s']:.3f}",
            serving["first_wall_s"] <= 0.15,
        ),
        (
            "Lambda first answer at most 60 MB RSS",
            f"{serving['first_peak_mb']:.0f}",
            serving["first_peak_mb"] <= 60,
        ),
        ("web worker at most 60 MB RSS", f"{serving['rss_mb']:.0f}", serving["rss_mb"] <= 60),
    ]
    if args.before:  # "at least today's": the code before the serving install, as it served
        today = results[f"full install, code of {args.before}"]
        checks += [
            (
                f"web p50 at most {args.before}'s (ratio)",
                f"{serving['p50_ms'] / today['p50_ms']:.2f}",
                serving["p50_ms"] <= today["p50_ms"],
            ),
            (
                f"web requests/s at least {args.before}'s (ratio)",
                f"{serving['rps'] / today['rps']:.2f}",
                serving["rps"] >= today["rps"],
            ),
        ]
    lines += ["", *check_table(checks)]
    publish("\n".join(lines) + "\n", args.results, "serving")
    print(json.dumps(results, indent=1), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
