"""Benchmark of scoring one month: the product, the course's naive script, and the floor.

    python benchmarks/bench.py [--rows 3000000] [--results benchmarks/RESULTS.md]

Each measurement runs in its own process, so its peak RSS is its own:
  (a) product: ride_duration.batch.month.score_month, read to the month's published current
               set (the score task's body, through its ParquetFolder sink),
               with the model's compiled forest and reference profile as the score task
               loads them, so the month's drift is measured;
  (a0) the same without the reference profile (a model trained before profiles): no drift,
               to tell what measuring it costs; (a) and (a0) run twice each, alternately,
               and each keeps its faster run;
  (b) naive:   the course's script: whole month in pandas, to_dict(orient="records"),
               pipeline.predict on the dicts, uuid.uuid4() in a Python loop, to_parquet;
  (c) floor:   read only the needed columns, predict of the final estimator on a feature matrix
               built beforehand, write the output table; nothing else.
The month is real green trips from TLC_DATA_DIR resampled to --rows rows and moved into one
month (generated trips when that folder is absent). The model is a RandomForest trained as
train.py trains it, on green 2021-01, saved once under benchmarks/.cache and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.results import check_table, publish  # noqa: E402 - after sys.path

CACHE = REPO / "benchmarks" / ".cache"
WORK = REPO / "benchmarks" / ".work"
YEAR, MONTH = 2024, 3  # the month the resampled trips are moved into
TAXI_TYPE = "green"
MEMORY_ROWS = (1_000_000, 6_000_000)


# --- preparation (cached) ---------------------------------------------------------------------


def tlc_dir() -> Path | None:
    value = os.environ.get("TLC_DATA_DIR")
    if value and Path(value, "green_tripdata_2021-01.parquet").is_file():
        return Path(value)
    return None


def source_trips() -> tuple[pa.Table, str]:
    """Every real green trip at hand (or generated ones), with the columns of the files."""
    folder = tlc_dir()
    if folder is None:
        from tests.support.tlc_fake import make_trips

        tables = [make_trips("green", 2021, m, 100_000, messy=False) for m in range(1, 13)]
        return pa.concat_tables(tables, promote_options="permissive"), "generated green trips"
    files = sorted(folder.glob("green_tripdata_*.parquet"))
    tables = [pq.read_table(f) for f in files]
    # The two dtype eras differ (SOURCES.md); permissive promotion unifies them.
    table = pa.concat_tables(tables, promote_options="permissive")
    return table, f"{len(files)} real green months from TLC_DATA_DIR ({table.num_rows:,} trips)"


def build_month(rows: int, distinct: bool = False) -> tuple[Path, str]:
    """A green month of `rows` trips resampled from real ones, cached by size.

    With `distinct`, every trip's distance is nudged by a different millionth of a mile, so no
    two trips share a feature row and the product's per-row prediction cache cannot help.
    """
    suffix = ("-real" if tlc_dir() else "-generated") + ("-distinct" if distinct else "")
    path = CACHE / f"green_tripdata_{YEAR}-{MONTH:02d}_{rows}{suffix}.parquet"
    note = CACHE / f"{path.name}.source"
    if path.exists() and note.exists():
        return path, note.read_text()
    table, source = source_trips()
    distance = table["trip_distance"].to_numpy(zero_copy_only=False)
    # Both scorers must see the same rows: keep trips whose distance the product accepts.
    table = table.filter(pa.array(np.isfinite(distance) & (distance >= 0)))
    index = np.random.default_rng(42).integers(0, table.num_rows, rows)
    sample = table.take(pa.array(index))
    pickup = sample["lpep_pickup_datetime"].to_numpy().astype("datetime64[us]")
    dropoff = sample["lpep_dropoff_datetime"].to_numpy().astype("datetime64[us]")
    # Move each trip into the month, keeping its duration and time of day.
    offset = (pickup - pickup.astype("datetime64[D]")) + np.timedelta64(1, "D") * (
        np.arange(rows) % 28
    )
    start = np.datetime64(f"{YEAR}-{MONTH:02d}-01", "us")
    new_pickup = start + offset
    sample = sample.set_column(
        sample.schema.get_field_index("lpep_pickup_datetime"),
        "lpep_pickup_datetime",
        pa.array(new_pickup, pa.timestamp("us")),
    ).set_column(
        sample.schema.get_field_index("lpep_dropoff_datetime"),
        "lpep_dropoff_datetime",
        pa.array(new_pickup + (dropoff - pickup), pa.timestamp("us")),
    )
    if distinct:
        nudged = sample["trip_distance"].to_numpy() + np.arange(rows) * 1e-6
        sample = sample.set_column(
            sample.schema.get_field_index("trip_distance"), "trip_distance", pa.array(nudged)
        )
        source += ", every distance nudged so that no feature row repeats"
    CACHE.mkdir(parents=True, exist_ok=True)
    # One row group per file, as the TLC writes them.
    pq.write_table(sample, path, row_group_size=rows, compression="snappy")
    note.write_text(source)
    return path, source


def training_trips() -> Any:
    """The prepared trips of green 2021-01 (real, else generated), as train.py fits on them."""
    from ride_duration.core.months import Month
    from ride_duration.data import features
    from ride_duration.data.sources import canonical_columns, read_trips

    folder = tlc_dir()
    if folder:
        return read_trips(
            str(folder / "green_tripdata_2021-01.parquet"), "green", Month(2021, 1), 500_000
        )
    from tests.support.tlc_fake import make_trips

    raw = make_trips("green", 2021, 1, 80_000)
    raw = canonical_columns(raw, "green", features.required_fields(features.ALL_FEATURES))
    return features.prepare_trips(raw, Month(2021, 1))


def train_model() -> Path:
    """The RandomForest of train.py, fitted on green 2021-01 and saved once, compiled and
    profiled as train.py does it (forest.npz and profile.npz beside the pickle)."""
    from ride_duration.forest import npz
    from ride_duration.model.predictors import make_predictor
    from ride_duration.model.profiling import reference_profile
    from ride_duration.monitoring.profile import PROFILE_FILE

    path = CACHE / ("model-real" if tlc_dir() else "model-generated")
    if not (path / npz.FILE_NAME).exists():
        import mlflow.sklearn

        from ride_duration.data import features
        from ride_duration.model import training
        from ride_duration.model.compiling import compile_checked

        trips = training_trips().table
        records = features.feature_records(trips)
        pipeline = training.make_pipeline("random-forest")
        pipeline.fit(records, trips[features.ACTUAL_DURATION].to_numpy())
        if path.exists():
            shutil.rmtree(path)
        mlflow.sklearn.save_model(pipeline, str(path), serialization_format="cloudpickle")
        npz.save(compile_checked(pipeline, records).model, path / npz.FILE_NAME)
    if not (path / PROFILE_FILE).exists():
        compiled = npz.load(str(path / npz.FILE_NAME), "forest")
        profile = reference_profile(make_predictor(compiled), training_trips())
        (path / PROFILE_FILE).write_bytes(profile.to_bytes())
    return path


# --- the three measurements (each in its own process) ------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak resident memory, in MB.

    VmHWM belongs to the process's own address space. ru_maxrss is no good here: Linux carries
    it across exec, so a child started by a parent holding a big table reports the parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def product_file(root: Path) -> Path:
    """The current set (a)'s run publishes under the output root `root`."""
    from ride_duration.batch.paths import MonthOutput
    from ride_duration.core.months import Month

    return Path(MonthOutput(str(root), TAXI_TYPE, Month(YEAR, MONTH)).current)


def run_product(
    input_path: Path, model_path: Path, output: Path, with_reference: bool = True
) -> dict:
    """The score task's body: the month published as the current set under the root `output`
    (emptied first, so that every run publishes a first set); without the model's reference
    profile when `with_reference` is False."""
    from ride_duration.batch.month import score_month
    from ride_duration.batch.paths import MonthOutput
    from ride_duration.batch.sink import ParquetFolder
    from ride_duration.core.months import Month
    from ride_duration.core.settings import Settings
    from ride_duration.data.features import available_features
    from ride_duration.model.loading import load_profile
    from ride_duration.model.resolve import ModelRef
    from ride_duration.model.service import predictor_for

    shutil.rmtree(output, ignore_errors=True)
    settings = Settings.from_env()
    sink = ParquetFolder(
        MonthOutput(str(output), TAXI_TYPE, Month(YEAR, MONTH)), settings.lock_stale_seconds
    )
    ref = ModelRef(uri=str(model_path), resolved_uri=str(model_path), run_id="bench")
    clock = time.perf_counter()
    predictor = predictor_for(ref, available_features(TAXI_TYPE))
    reference = load_profile(ref.resolved_uri) if with_reference else None
    load_first = time.perf_counter() - clock
    clock = time.perf_counter()
    predictor_for(ref, available_features(TAXI_TYPE))  # a second month in the same process
    load_again = time.perf_counter() - clock
    started = time.perf_counter()
    result = score_month(
        taxi_type=TAXI_TYPE,
        month=Month(YEAR, MONTH),
        input_uri=str(input_path),
        sink=sink,
        model=ref,
        predictor=predictor,
        settings=settings,
        reference=reference,
    )
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "rows_read": result.rows_read,
        "rows_scored": result.rows_scored,
        "stages": result.seconds,
        "model_load_seconds": load_first,
        "model_load_again_seconds": load_again,
        "scoring": predictor.path,
        "drift_columns": len(result.drift),
    }


def run_product_without_drift(input_path: Path, model_path: Path, output: Path) -> dict:
    """(a0): the product scoring with a model that has no reference profile."""
    return run_product(input_path, model_path, output, with_reference=False)


def run_naive(input_path: Path, model_path: Path, output: Path) -> dict:
    """The course's 04-deployment/batch score.py (benchmarks/course/batch.py, its own code),
    for the same month, with the model loaded beforehand as for (a)."""
    import contextlib
    import io

    import mlflow.sklearn
    import pyarrow.parquet as pq

    sys.path.insert(0, str(REPO / "benchmarks" / "course"))
    import batch as course  # the course's, from benchmarks/course

    model = mlflow.sklearn.load_model(str(model_path))
    course.load_model = lambda run_id: model  # already loaded: (b) is timed from reading on
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # its progress lines; stdout is our result
        course.apply_model(str(input_path), "bench", str(output))
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows_scored": pq.read_metadata(output).num_rows}


def run_floor(input_path: Path, model_path: Path, output: Path) -> dict:
    """Read the needed columns, predict on a matrix built beforehand, write the output."""
    import mlflow.sklearn

    from ride_duration.batch.output import output_table
    from ride_duration.core.months import Month
    from ride_duration.data import features, layouts, ride_ids
    from ride_duration.model.runtimes.pipeline import DictVectorizerPredictor

    pipeline = mlflow.sklearn.load_model(str(model_path))
    columns = [
        "lpep_pickup_datetime",
        "lpep_dropoff_datetime",
        "PULocationID",
        "DOLocationID",
        "trip_distance",
    ]
    # Built beforehand, not timed: the feature matrix and the rest of the output table.
    raw = pq.read_table(input_path, columns=columns).rename_columns(
        [
            layouts.PICKUP,
            layouts.DROPOFF,
            layouts.PICKUP_LOCATION,
            layouts.DROPOFF_LOCATION,
            layouts.DISTANCE,
        ]
    )
    trips = features.prepare_trips(raw, Month(YEAR, MONTH)).table
    matrix = DictVectorizerPredictor(pipeline).transform(trips)
    ids = ride_ids.random_ride_ids(trips.num_rows)
    estimator = pipeline[-1]
    del raw

    started = time.perf_counter()
    pq.read_table(input_path, columns=columns)
    read = time.perf_counter() - started
    clock = time.perf_counter()
    predictions = estimator.predict(matrix)
    predict = time.perf_counter() - clock
    clock = time.perf_counter()
    pq.write_table(output_table(trips, ids, predictions, "bench"), output)
    write = time.perf_counter() - clock
    return {
        "seconds": time.perf_counter() - started,
        "rows_scored": trips.num_rows,
        "stages": {"read": read, "predict": predict, "write": write},
    }


RUNNERS = {
    "product": run_product,
    "product-without-drift": run_product_without_drift,
    "naive": run_naive,
    "floor": run_floor,
}


def measure(kind: str, input_path: Path, model_path: Path, output: Path) -> dict:
    """Run one measurement in a fresh Python process and return what it reports."""
    result = subprocess.run(
        [
            sys.executable,
            __file__,
            "--run",
            kind,
            "--input",
            str(input_path),
            "--model",
            str(model_path),
            "--output",
            str(output),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def same_predictions(product: Path, naive: Path) -> float:
    """The largest difference between (a) and (b) predictions of the same rides."""
    a = pq.read_table(product, columns=["predicted_duration"])["predicted_duration"].to_numpy()
    b = pq.read_table(naive, columns=["predicted_duration"])["predicted_duration"].to_numpy()
    if len(a) != len(b):
        return float("inf")
    return float(np.max(np.abs(a - b))) if len(a) else 0.0


# --- report -------------------------------------------------------------------------------------


def versions() -> str:
    import mlflow
    import pandas
    import prefect
    import sklearn

    return (
        f"Python {platform.python_version()}, scikit-learn {sklearn.__version__}, "
        f"pyarrow {pa.__version__}, pandas {pandas.__version__}, numpy {np.__version__}, "
        f"mlflow {mlflow.__version__}, prefect {prefect.__version__}"
    )


def machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB memory, {platform.system()}"


def report(rows: int, source: str, results: dict, memory: dict, diff: float) -> tuple[str, bool]:
    a, b, c = results["product"], results["naive"], results["floor"]
    a0 = results["product-without-drift"]
    drift_time = a["seconds"] / a0["seconds"]
    drift_rss = a["rss_mb"] - a0["rss_mb"]
    speedup = b["seconds"] / a["seconds"]
    overhead = a["seconds"] / c["seconds"]
    rss_ratio = a["rss_mb"] / b["rss_mb"]
    mem_ratio = memory[MEMORY_ROWS[1]]["rss_mb"] / memory[MEMORY_ROWS[0]]["rss_mb"]
    checks = [  # (name, value, met), as check_table takes them
        (
            "(b)/(a) >= 3: the product is 3x faster than the naive script",
            f"{speedup:.2f}",
            speedup >= 3,
        ),
        (
            "(a)/(c) <= 1.15: at most 15% over read + predict + write",
            f"{overhead:.2f}",
            overhead <= 1.15,
        ),
        ("peak RSS (a) <= half of (b)", f"{rss_ratio:.2f}", rss_ratio <= 0.5),
        ("peak RSS 6M rows < 1.3 x 1M rows", f"{mem_ratio:.2f}", mem_ratio < 1.3),
        ("(a) and (b) predict the same values (max diff <= 1e-9)", f"{diff:.1e}", diff <= 1e-9),
        (
            "(a)/(a0) <= 1.10: measuring drift adds at most 10% to the time",
            f"{drift_time:.3f}",
            drift_time <= 1.10,
        ),
        (
            "peak RSS (a) - (a0) <= 50 MB: and at most 50 MB to the memory",
            f"{drift_rss:+.0f} MB",
            drift_rss <= 50,
        ),
    ]
    lines = [
        f"Month: {rows:,} trips resampled from {source}, moved into green {YEAR}-{MONTH:02d}.",
        "",
        "| run | seconds | rows/s | peak RSS (MB) | rows scored |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, label in (
        ("product", "(a) product"),
        ("product-without-drift", "(a0) product, no drift measured"),
        ("naive", "(b) naive (course script)"),
        ("floor", "(c) floor"),
    ):
        r = results[name]
        lines.append(
            f"| {label} | {r['seconds']:.2f} | {r['rows_scored'] / r['seconds']:,.0f} | "
            f"{r['rss_mb']:,.0f} | {r['rows_scored']:,} |"
        )
    lines += [
        "",
        "Stages of (a), seconds: "
        + ", ".join(f"{k} {v:.2f}" for k, v in a["stages"].items() if k != "total"),
    ]
    lines += [
        "Stages of (c), seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in c["stages"].items())
    ]
    lines += [
        f"Model load: {a['model_load_seconds']:.2f} s the first time in a process, "
        f"{a['model_load_again_seconds'] * 1000:.3f} ms for the next month (cached). "
        f"(a) predicts with: {a['scoring']}; (b) and (c) with scikit-learn. "
        f"(a) measures the drift of {a['drift_columns']} columns from the model's reference "
        "profile (its stage `profile`); (a0) scores with a model that has none."
    ]
    lines += ["", "| product on | seconds | peak RSS (MB) |", "|---|---:|---:|"]
    for n in MEMORY_ROWS:
        lines.append(f"| {n:,} rows | {memory[n]['seconds']:.2f} | {memory[n]['rss_mb']:,.0f} |")
    lines += ["", *check_table(checks)]
    return "\n".join(lines) + "\n", all(met for _, _, met in checks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--results", type=Path, help="also write the report to this markdown file")
    parser.add_argument(
        "--distinct-rows", action="store_true", help="a month in which no feature row repeats"
    )
    parser.add_argument("--run", choices=sorted(RUNNERS), help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.run:  # a child process: one measurement, reported as one JSON line
        result = RUNNERS[args.run](args.input, args.model, args.output)
        result["rss_mb"] = peak_rss_mb()
        print(json.dumps(result))
        return 0

    started = time.perf_counter()
    model_path = train_model()
    input_path, source = build_month(args.rows, args.distinct_rows)
    WORK.mkdir(parents=True, exist_ok=True)
    # (a) publishes under an output root; (b) and (c) write one file.
    outputs = {
        kind: WORK / (kind if kind.startswith("product") else f"{kind}.parquet") for kind in RUNNERS
    }
    results: dict[str, dict] = {}
    for kind in ("product", "product-without-drift", "product", "product-without-drift"):
        print(f"measuring ({kind}) on {args.rows:,} rows ...", file=sys.stderr)
        run = measure(kind, input_path, model_path, outputs[kind])
        if kind not in results or run["seconds"] < results[kind]["seconds"]:
            results[kind] = run
    for kind in ("naive", "floor"):
        print(f"measuring ({kind}) on {args.rows:,} rows ...", file=sys.stderr)
        results[kind] = measure(kind, input_path, model_path, outputs[kind])
    diff = same_predictions(product_file(outputs["product"]), outputs["naive"])
    memory = {}
    for n in MEMORY_ROWS:
        path, _ = build_month(n, args.distinct_rows)
        print(f"measuring (product) on {n:,} rows for memory ...", file=sys.stderr)
        memory[n] = measure("product", path, model_path, WORK / f"product-{n}")
    text, met = report(args.rows, source, results, memory, diff)
    header = (
        "## Batch: one month, in process (`make bench`)\n\n"
        f"Machine: {machine()}.\n\nVersions: {versions()}.\n\n"
        f"Command: `python benchmarks/bench.py {' '.join(sys.argv[1:])}`, "
        f"{datetime.now():%Y-%m-%d}, {time.perf_counter() - started:.0f} s in all.\n\n"
    )
    publish(header + text, args.results, "batch")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
