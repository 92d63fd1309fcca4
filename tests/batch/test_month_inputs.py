"""A bad-input matrix for `ride_duration.batch.month.score_month` on generated trip files.

Each case takes a clean generated green month, changes it one way with pyarrow, writes it as
parquet and scores it with a small fitted DictVectorizer + LinearRegression pipeline. A case is
either scored, with exact drop counts and a complete manifest, or refused with one line and
nothing at all left under the output root. Then: scoring a month again, with the same model or
another, and a failure at each step of publishing.
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline, make_pipeline

from ride_duration.batch import manifest, result
from ride_duration.batch.locks import boot_id, process_start
from ride_duration.batch.month import score_month
from ride_duration.batch.paths import MonthOutput
from ride_duration.batch.sink import ParquetFolder
from ride_duration.core import storage, writes
from ride_duration.core.errors import MonthBusyError, QualityError, SchemaError, ScoringError
from ride_duration.core.limits import Limits
from ride_duration.core.months import Month
from ride_duration.core.settings import Settings
from ride_duration.data import features
from ride_duration.model.predictors import make_predictor
from ride_duration.model.resolve import ModelRef
from tests.support.rides import prepare
from tests.support.tlc_fake import make_trips, write_trips

ROWS = 300
ZONES = 4  # ids are folded onto 4 zones: 16 pairs, all of them seen in training
UNSEEN = 200  # a zone id the model never saw
MODEL = ModelRef(
    uri="models:/m/1", resolved_uri="models:/m/1", name="m", version="1", run_id="run1"
)
MODEL_2 = ModelRef(
    uri="models:/m/2", resolved_uri="models:/m/2", name="m", version="2", run_id="run2"
)
FOLDER = "taxi_type=green/year=2021/month=03"
OUTPUT = f"{FOLDER}/predictions.parquet"
MANIFEST = f"{FOLDER}/_manifest.json"
VERSIONS = f"_versions/{FOLDER}"
VERSION = f"{VERSIONS}/run1.parquet"
MONITORING = "_monitoring/green-2021-03.parquet"  # the month's row of the monitoring table
REASONS = [reason.value for reason in features.DropReason]
PICKUP, DROPOFF = "lpep_pickup_datetime", "lpep_dropoff_datetime"
IDS = ("PULocationID", "DOLocationID")
ALL = tuple(range(ROWS))
NAN, INF = float("nan"), float("inf")


# --- generated months -------------------------------------------------------------------------


def trips(taxi_type: str = "green", rows: int = ROWS, seed: int = 0) -> pa.Table:
    """A clean generated March 2021 whose location ids fall in 1..ZONES."""
    table = make_trips(taxi_type, 2021, 3, rows, messy=False, seed=seed)
    for name in IDS:
        folded = table[name].to_numpy() % ZONES + 1
        table = put(table, name, pa.array(folded, table.schema.field(name).type))
    return table


def put(table: pa.Table, name: str, array: pa.Array) -> pa.Table:
    """`table` with column `name` replaced by `array` (any type), in place."""
    return table.set_column(table.schema.get_field_index(name), name, array)


def setting(table: pa.Table, name: str, values: dict, kind: pa.DataType | None = None):
    """`table` with some rows of `name` set (row -> value), as `kind` (default: its type)."""
    column = table[name].to_pylist()
    for row, value in values.items():
        column[row] = value
    return put(table, name, pa.array(column, kind or table.schema.field(name).type))


def cast(table: pa.Table, names: tuple[str, ...], kind: pa.DataType) -> pa.Table:
    for name in names:
        table = put(table, name, table[name].combine_chunks().cast(kind))
    return table


def lasting(table: pa.Table, rows, minutes: float) -> pa.Table:
    """`table` whose trips at `rows` last `minutes` (negative: dropoff before pickup)."""
    pickup = table[PICKUP].to_numpy()
    dropoff = table[DROPOFF].to_numpy().copy()
    rows = list(rows)
    dropoff[rows] = pickup[rows] + np.timedelta64(int(minutes * 60e6), "us")
    return put(table, DROPOFF, pa.array(dropoff, pa.timestamp("us")))


def picked_up(table: pa.Table, when: dict[int, datetime]) -> pa.Table:
    """`table` whose trips at the given rows start at another time and last 10 minutes."""
    table = setting(table, PICKUP, when)
    return setting(table, DROPOFF, {row: at + timedelta(minutes=10) for row, at in when.items()})


def several_faults(table: pa.Table) -> pa.Table:
    """Rows with more than one fault, each counted once under its first reason."""
    table = picked_up(table, {10: datetime(2021, 2, 27, 10)})  # and a NaN distance below
    table = lasting(table, [11], -5)  # and a negative id below
    table = setting(table, "PULocationID", {11: -3, 12: -3})
    return setting(table, "trip_distance", {10: NAN, 12: INF})


def renamed(table: pa.Table, names: dict[str, str]) -> pa.Table:
    return table.rename_columns([names.get(name, name) for name in table.column_names])


def unseen_pairs(table: pa.Table) -> pa.Table:
    return setting(table, "PULocationID", dict.fromkeys(range(0, 60, 5), UNSEEN))


# --- the model --------------------------------------------------------------------------------


def prepared(raw: pa.Table) -> pa.Table:
    return prepare(raw, "green", 2021, 3)


@dataclass(frozen=True)
class Fitted:
    pipeline: Pipeline
    known_pairs: frozenset[str]  # the PU_DO values the model was trained on


@pytest.fixture(scope="module")
def fitted() -> Fitted:
    training = prepared(trips(rows=600, seed=1))
    records = features.feature_records(training)
    pipeline = make_pipeline(DictVectorizer(), LinearRegression())
    pipeline.fit(records, training[features.ACTUAL_DURATION].to_numpy())
    return Fitted(pipeline, frozenset(record[features.PU_DO] for record in records))


# --- scoring ----------------------------------------------------------------------------------


def score(
    tmp_path: Path,
    table: pa.Table,
    fitted: Fitted,
    *,
    limits: Limits = Limits(),  # noqa: B008 - frozen
    batch_size: int = 128,
    model: ModelRef = MODEL,
    flow_run_id: str | None = None,
) -> tuple[result.MonthResult, Path]:
    source = write_trips(tmp_path / "in" / "green_tripdata_2021-03.parquet", table)
    return score_month(
        taxi_type="green",
        month=Month(2021, 3),
        input_uri=str(source),
        sink=ParquetFolder(month_output(tmp_path), stale_after_seconds=60),
        model=model,
        predictor=make_predictor(fitted.pipeline),
        settings=Settings(batch_size=batch_size, limits=limits),
        flow_run_id=flow_run_id,
    ), source


def month_output(tmp_path: Path) -> MonthOutput:
    return MonthOutput(str(tmp_path / "out"), "green", Month(2021, 3))


def version_file(model: ModelRef) -> str:
    return f"{VERSIONS}/{model.run_id}.parquet"


def files(folder: Path) -> list[str]:
    """Every file below `folder`, hidden ones included."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir())


def assert_refused(excinfo: pytest.ExceptionInfo, error: type, fragment: str) -> str:
    message = str(excinfo.value)
    assert excinfo.type is error, message
    assert "\n" not in message
    assert fragment in message
    return message


def assert_published(
    tmp_path: Path, result: result.MonthResult, source: Path
) -> tuple[dict, pa.Table]:
    """The checks every scored month passes; returns its manifest and output."""
    out = tmp_path / "out"
    output = month_output(tmp_path)
    # The current set, its manifest and the version of each model scored: no staging, no lock.
    found = files(out)
    assert [name for name in found if not name.startswith(f"{VERSIONS}/")] == [
        MONITORING,
        MANIFEST,
        OUTPUT,
    ]
    assert version_file(result.model) in found
    assert all("/." not in name and "/_lock" not in name for name in found)
    assert result.output_uri == str(out / OUTPUT)
    assert result.manifest_uri == str(out / MANIFEST)
    content = manifest.current(output)
    assert content is not None
    # The readable copy describes the file, and says what its footer says (with the file's info).
    assert manifest.parse((out / MANIFEST).read_text()) == content
    footer = manifest.from_footer(str(out / OUTPUT))
    assert content == manifest.with_file(footer, storage.file_info(str(out / OUTPUT)))
    # The current set is a whole copy of the version just scored, footer and all.
    assert (out / OUTPUT).read_bytes() == (out / version_file(result.model)).read_bytes()
    assert content["output"]["bytes"] == (out / OUTPUT).stat().st_size
    assert content["output"]["uri"] == str(out / OUTPUT)
    assert content["output"]["version_uri"] == str(out / version_file(result.model))
    assert content["model"]["label"] == result.model.label
    assert content["rows_read"] == result.rows_read == pq.ParquetFile(source).metadata.num_rows
    assert content["rows_read"] == content["rows_scored"] + sum(content["rows_dropped"].values())
    assert content["rows_dropped"] == result.rows_dropped
    assert content["rows_scored"] == result.rows_scored
    written = pq.read_table(out / OUTPUT)
    assert written.num_rows == result.rows_scored == content["output"]["rows"]
    assert set(written["model_version"].to_pylist()) <= {result.model.label}
    for name in IDS:
        assert written.schema.field(name).type == pa.int64()
        assert all(type(value) is int for value in written[name].to_pylist() if value is not None)
    return content, written


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, fitted) -> pa.Table:
    """The untouched month's output: one row per source row, in order."""
    result, _ = score(tmp_path_factory.mktemp("baseline"), trips(), fitted)
    written = pq.read_table(Path(result.output_uri))
    assert written.num_rows == ROWS
    return written


# --- the matrix -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scored:
    """The month is published; `dropped` counts are exact (others 0)."""

    dropped: dict[str, int] = field(default_factory=dict)
    bad_rows: tuple[int, ...] = ()  # the source rows that are dropped
    nulls: dict[str, tuple[int, ...]] = field(default_factory=dict)  # id column -> null rows
    durations: dict[int, float] = field(default_factory=dict)  # source row -> new duration


@dataclass(frozen=True)
class Refused:
    """The month is refused with `error`, one line holding `fragment`; nothing is written."""

    error: type[ScoringError]
    fragment: str


def case(
    name: str,
    modify: Callable[[pa.Table], pa.Table],
    expect: Scored | Refused,
    limits: Limits = Limits(),  # noqa: B008 - frozen
    marks=(),
):
    return pytest.param(modify, limits, expect, id=name, marks=marks)


NULL_ROWS = (0, 1, 2, 150, 299)
BAD_DISTANCES = {1: NAN, 2: NAN, 40: INF, 41: INF, 100: -INF, 101: -INF, 250: -0.5, 299: -7.0}
NEGATIVE = (3, 77, 150, 151, 298)
FORTY_PERCENT = tuple(range(0, ROWS, 5)) + tuple(range(1, ROWS, 5))  # 120 rows
OTHER_CASE = {
    PICKUP: "LPEP_PICKUP_DATETIME",
    DROPOFF: "Lpep_Dropoff_Datetime",
    "PULocationID": "pulocationid",
    "DOLocationID": "DOLOCATIONID",
    "trip_distance": "Trip_Distance",
}

CASES = [
    case("untouched", lambda x: x, Scored()),
    # location ids
    case(
        "string ids holding numbers",
        lambda x: cast(x, IDS, pa.string()),
        Scored(),
    ),
    case(
        "large_string ids holding numbers",
        lambda x: cast(x, IDS, pa.large_string()),
        Scored(),
    ),
    case(
        "string ids that are not numbers",
        lambda x: setting(cast(x, IDS, pa.string()), "PULocationID", {7: "abc"}),
        Refused(SchemaError, "PULocationID holds text that is not a location id"),
    ),
    case(
        "string ids with nulls",
        lambda x: setting(
            cast(x, IDS, pa.string()), "DOLocationID", dict.fromkeys(NULL_ROWS, None)
        ),
        Scored(nulls={"DOLocationID": NULL_ROWS}),
    ),
    case(
        "float ids with nulls",
        lambda x: setting(
            cast(x, IDS, pa.float64()), "PULocationID", dict.fromkeys(NULL_ROWS, None)
        ),
        Scored(nulls={"PULocationID": NULL_ROWS}),
    ),
    case(  # NaN is no id: pandas writes a missing id as null, and null is the unknown location
        "float ids with NaN",
        lambda x: setting(
            cast(x, IDS, pa.float64()), "DOLocationID", dict.fromkeys(NULL_ROWS, NAN)
        ),
        Scored(dropped={"invalid_location": len(NULL_ROWS)}, bad_rows=NULL_ROWS),
    ),
    case(
        "distances beyond float32",
        lambda x: setting(x, "trip_distance", {5: 1e39, 6: 1e308}),
        Scored(dropped={"invalid_distance": 2}, bad_rows=(5, 6)),
    ),
    case(
        "fractional float ids",
        lambda x: setting(cast(x, IDS, pa.float64()), "PULocationID", {5: 2.5, 6: 1e300}),
        Scored(dropped={"invalid_location": 2}, bad_rows=(5, 6)),
    ),
    case(
        "location ids of arrow type null",
        lambda x: put(
            put(x, "PULocationID", pa.nulls(x.num_rows)), "DOLocationID", pa.nulls(x.num_rows)
        ),
        Scored(nulls=dict.fromkeys(IDS, ALL)),
    ),
    case("int32 ids", lambda x: cast(x, IDS, pa.int32()), Scored()),
    case("uint16 ids", lambda x: cast(x, IDS, pa.uint16()), Scored()),
    case(
        "negative integer ids",
        lambda x: setting(setting(x, "PULocationID", {4: -1}), "DOLocationID", {4: -2, 9: -7}),
        Scored(dropped={"invalid_location": 2}, bad_rows=(4, 9)),
    ),
    case(
        "ids boolean",
        lambda x: cast(x, ("PULocationID",), pa.bool_()),
        Refused(SchemaError, "PULocationID has type bool, expected integer location ids"),
    ),
    # columns
    case(
        "missing dropoff column",
        lambda x: x.drop_columns([DROPOFF]),
        Refused(SchemaError, "the green trip file lacks column(s) lpep_dropoff_datetime"),
    ),
    case(
        "missing distance column",
        lambda x: x.drop_columns(["trip_distance"]),
        Refused(SchemaError, "lacks column(s) trip_distance"),
    ),
    case(
        "pickup column renamed",
        lambda x: renamed(x, {PICKUP: "pickup_time"}),
        Refused(SchemaError, "lacks column(s) lpep_pickup_datetime"),
    ),
    case(
        "a yellow file",
        lambda _: trips("yellow"),
        Refused(SchemaError, "it looks like a yellow file"),
    ),
    case(
        "extra unknown columns",
        lambda x: (
            x.append_column("note", pa.array(["x"] * x.num_rows))
            .append_column("dropoff_datetime", pa.array(["not a date"] * x.num_rows))
            .append_column("PULocationID_2", pa.array([-5.5] * x.num_rows))
        ),
        Scored(),
    ),
    case("column names in other case", lambda x: renamed(x, OTHER_CASE), Scored()),
    # datetimes
    case("timestamp[ns]", lambda x: cast(x, (PICKUP, DROPOFF), pa.timestamp("ns")), Scored()),
    case(
        "tz-aware UTC timestamps",
        lambda x: cast(x, (PICKUP, DROPOFF), pa.timestamp("us", tz="UTC")),
        Scored(),
    ),
    case("timestamps as text", lambda x: cast(x, (PICKUP, DROPOFF), pa.string()), Scored()),
    case(
        "timestamps as text that is not a date",
        lambda x: setting(cast(x, (PICKUP, DROPOFF), pa.string()), DROPOFF, {3: "soon"}),
        Refused(SchemaError, "dropoff_datetime holds text that is not a date-time"),
    ),
    case(
        "timestamps as integers",
        lambda x: cast(x, (PICKUP,), pa.int64()),
        Refused(SchemaError, "pickup_datetime has type int64, expected a timestamp"),
    ),
    case(
        "a type error names the file's column",
        lambda x: cast(x, (PICKUP,), pa.int64()),
        Refused(SchemaError, "column lpep_pickup_datetime has type int64"),
    ),
    case(
        "missing datetimes",
        lambda x: setting(setting(x, PICKUP, {0: None, 8: None}), DROPOFF, {8: None, 9: None}),
        Scored(dropped={"missing_datetime": 3}, bad_rows=(0, 8, 9)),
    ),
    case(
        "pickups outside the month",
        lambda x: picked_up(
            x,
            {20: datetime(2009, 1, 1), 21: datetime(2021, 2, 28, 23, 55), 22: datetime(2021, 4, 1)},
        ),
        Scored(dropped={"pickup_outside_month": 3}, bad_rows=(20, 21, 22)),
    ),
    # durations
    case(
        "negative durations",
        lambda x: lasting(x, NEGATIVE, -12.5),
        Scored(dropped={"duration_out_of_range": len(NEGATIVE)}, bad_rows=NEGATIVE),
    ),
    case(
        "durations just outside 1..60 minutes",
        lambda x: lasting(lasting(x, [30], 0.99), [31], 60.01),
        Scored(dropped={"duration_out_of_range": 2}, bad_rows=(30, 31)),
    ),
    case(
        "durations of exactly 1 and 60 minutes",
        lambda x: lasting(lasting(x, [30], 1), [31], 60),
        Scored(durations={30: 1.0, 31: 60.0}),
    ),
    case(
        "every trip outside 1..60 minutes",
        lambda x: lasting(x, ALL, 90),
        Refused(QualityError, "100.0% of rows dropped (most: duration_out_of_range 300)"),
    ),
    case(
        "every trip outside 1..60 minutes, default limits name MAX_DROP_RATIO",
        lambda x: lasting(x, ALL, 90),
        Refused(QualityError, "> MAX_DROP_RATIO 0.5; nothing was published"),
    ),
    case(
        "every trip outside 1..60 minutes, no drop limit",
        lambda x: lasting(x, ALL, 90),
        Scored(dropped={"duration_out_of_range": ROWS}, bad_rows=ALL),
        limits=Limits(max_drop_ratio=None),
    ),
    # distances
    case(
        "NaN, infinite and negative distances",
        lambda x: setting(x, "trip_distance", BAD_DISTANCES),
        Scored(dropped={"invalid_distance": len(BAD_DISTANCES)}, bad_rows=tuple(BAD_DISTANCES)),
    ),
    case(
        "null distances",
        lambda x: setting(x, "trip_distance", dict.fromkeys(NULL_ROWS, None)),
        Scored(dropped={"invalid_distance": len(NULL_ROWS)}, bad_rows=NULL_ROWS),
    ),
    case("distances as text", lambda x: cast(x, ("trip_distance",), pa.string()), Scored()),
    case(
        "distances as text that is not a number",
        lambda x: setting(cast(x, ("trip_distance",), pa.string()), "trip_distance", {2: "far"}),
        Refused(SchemaError, "trip_distance holds text that is not a number"),
    ),
    case(
        "several faults on one row count once, under the first reason",
        several_faults,
        Scored(
            dropped={"pickup_outside_month": 1, "duration_out_of_range": 1, "invalid_location": 1},
            bad_rows=(10, 11, 12),
        ),
    ),
    case(
        "an empty month",
        lambda x: x.slice(0, 0),
        Scored(),
    ),
    # the drop ratio limit, at and around its boundary (120 of 300 rows dropped: 40%)
    case(
        "40% dropped, MAX_DROP_RATIO 0.3",
        lambda x: setting(x, "trip_distance", dict.fromkeys(FORTY_PERCENT, NAN)),
        Refused(
            QualityError,
            "green 2021-03 failed its checks: 40.0% of rows dropped "
            "(most: invalid_distance 120) > MAX_DROP_RATIO 0.3",
        ),
        limits=Limits(max_drop_ratio=0.3),
    ),
    case(
        "40% dropped, MAX_DROP_RATIO 0.39",
        lambda x: setting(x, "trip_distance", dict.fromkeys(FORTY_PERCENT, NAN)),
        Refused(QualityError, "> MAX_DROP_RATIO 0.39"),
        limits=Limits(max_drop_ratio=0.39),
    ),
    case(
        "40% dropped, MAX_DROP_RATIO 0.4",
        lambda x: setting(x, "trip_distance", dict.fromkeys(FORTY_PERCENT, NAN)),
        Scored(dropped={"invalid_distance": 120}, bad_rows=FORTY_PERCENT),
        limits=Limits(max_drop_ratio=0.4),
    ),
    case(
        "40% dropped, MAX_DROP_RATIO 0.5",
        lambda x: setting(x, "trip_distance", dict.fromkeys(FORTY_PERCENT, NAN)),
        Scored(dropped={"invalid_distance": 120}, bad_rows=FORTY_PERCENT),
        limits=Limits(max_drop_ratio=0.5),
    ),
    # quality limits
    case(
        "MAX_RMSE crossed",
        lambda x: x,
        Refused(QualityError, "failed its checks: rmse "),
        limits=Limits(max_rmse=0.0001),
    ),
    case(
        "MAX_RMSE crossed, named",
        lambda x: x,
        Refused(QualityError, "> MAX_RMSE 0.0001; nothing was published"),
        limits=Limits(max_rmse=0.0001),
    ),
    case("MAX_RMSE kept", lambda x: x, Scored(), limits=Limits(max_rmse=100.0)),
    case(
        "MAX_MAE crossed",
        lambda x: x,
        Refused(QualityError, "> MAX_MAE 0.0001"),
        limits=Limits(max_mae=0.0001),
    ),
    case(
        "MAX_ABS_MEAN_ERROR crossed",
        lambda x: lasting(x, ALL, 59.5),  # every trip far longer than predicted
        Refused(QualityError, "> MAX_ABS_MEAN_ERROR 5"),
        limits=Limits(max_abs_mean_error=5.0),
    ),
    case(
        "MAX_UNKNOWN_PAIR_SHARE crossed by pairs the model never saw",
        unseen_pairs,
        Refused(
            QualityError, "failed its checks: unknown_pair_share 0.04 > MAX_UNKNOWN_PAIR_SHARE 0"
        ),
        limits=Limits(max_unknown_pair_share=0.0),
    ),
    case(
        "MAX_UNKNOWN_PAIR_SHARE 0 kept when every pair is known",
        lambda x: x,
        Scored(),
        limits=Limits(max_unknown_pair_share=0.0),
    ),
    case(
        "MAX_UNKNOWN_PAIR_SHARE crossed by unknown (null) locations",
        lambda x: setting(x, "DOLocationID", dict.fromkeys(range(30), None)),
        Refused(QualityError, "unknown_pair_share 0.1 > MAX_UNKNOWN_PAIR_SHARE 0.05"),
        limits=Limits(max_unknown_pair_share=0.05),
    ),
    # gaps
    case(
        "dictionary-encoded location ids (a pandas category column)",
        lambda x: put(
            x, "PULocationID", cast(x, IDS, pa.string())["PULocationID"].dictionary_encode()
        ),
        Scored(),
    ),
    case(
        "a uint64 id beyond int64",
        lambda x: setting(cast(x, IDS, pa.uint64()), "PULocationID", {6: 2**63}),
        Scored(dropped={"invalid_location": 1}, bad_rows=(6,)),
    ),
]


@pytest.mark.parametrize(("modify", "limits", "expect"), CASES)
def test_bad_input(tmp_path, fitted, baseline, modify, limits, expect):
    table = modify(trips())
    if isinstance(expect, Refused):
        with pytest.raises(ScoringError) as excinfo:
            score(tmp_path, table, fitted, limits=limits)
        message = assert_refused(excinfo, expect.error, expect.fragment)
        # Nothing published, staged or locked; a month refused by a limit has its row of the
        # monitoring table, which says why.
        if expect.error is QualityError:
            assert files(tmp_path / "out") == [MONITORING]
            row = pq.read_table(tmp_path / "out" / MONITORING).to_pylist()[0]
            assert (row["state"], row["reason"]) == ("refused", message)
        else:
            assert files(tmp_path / "out") == []
        return

    result, source = score(tmp_path, table, fitted, limits=limits)
    # The file holds exactly the types the case built (the parquet round trip kept them).
    assert pq.read_schema(source).equals(table.schema, check_metadata=False)
    content, written = assert_published(tmp_path, result, source)
    assert content["rows_dropped"] == {reason: expect.dropped.get(reason, 0) for reason in REASONS}

    # Kept rows are the source rows not dropped, in order, with the untouched month's values.
    kept = [row for row in range(table.num_rows) if row not in set(expect.bad_rows)]
    expected = baseline.take(pa.array(kept, pa.int64()))
    for name in ("ride_id", "pickup_datetime", "model_version"):
        assert written[name].to_pylist() == expected[name].to_pylist(), name
    durations = expected["actual_duration"].to_pylist()
    wanted = [expect.durations.get(row, value) for row, value in zip(kept, durations, strict=True)]
    assert written["actual_duration"].to_pylist() == wanted
    null_rows = set()
    for name in IDS:
        nulls = set(expect.nulls.get(name, ()))
        null_rows |= nulls
        wanted = [
            None if row in nulls else v
            for row, v in zip(kept, expected[name].to_pylist(), strict=True)
        ]
        assert written[name].to_pylist() == wanted, name
    same = np.array([row not in null_rows for row in kept], dtype=bool)
    predicted = written["predicted_duration"].to_numpy()
    np.testing.assert_allclose(
        predicted[same], expected["predicted_duration"].to_numpy()[same], atol=1e-9
    )
    np.testing.assert_allclose(
        written["diff"].to_numpy(), written["actual_duration"].to_numpy() - predicted, atol=1e-9
    )
    if not kept:
        assert content["metrics"] == dict.fromkeys(
            ["rmse", "mae", "mean_error", "unknown_pair_share"]
        )


# --- metrics and manifest ---------------------------------------------------------------------


def expected_metrics(written: pa.Table, known_pairs: frozenset[str]) -> dict[str, float]:
    diff = written["diff"].to_numpy()
    pairs = [
        f"{-1 if pu is None else pu}_{-1 if do is None else do}"
        for pu, do in zip(
            written["PULocationID"].to_pylist(), written["DOLocationID"].to_pylist(), strict=True
        )
    ]
    return {
        "rmse": math.sqrt(np.mean(np.square(diff))),
        "mae": float(np.mean(np.abs(diff))),
        "mean_error": float(np.mean(diff)),
        "unknown_pair_share": float(np.mean([pair not in known_pairs for pair in pairs])),
    }


def test_a_passing_month_records_its_metrics_model_and_files(tmp_path, fitted):
    table = unseen_pairs(trips())  # 12 trips with an unseen pickup zone
    table = setting(table, "DOLocationID", dict.fromkeys(range(100, 105), None))  # 5 unknown
    table = setting(table, "trip_distance", dict.fromkeys(range(200, 204), NAN))  # 4 dropped
    result, source = score(tmp_path, table, fitted, batch_size=64)
    content, written = assert_published(tmp_path, result, source)
    assert content["rows_dropped"]["invalid_distance"] == 4
    assert written.num_rows == ROWS - 4

    metrics = content["metrics"]
    assert set(metrics) == {"rmse", "mae", "mean_error", "unknown_pair_share"}
    expected = expected_metrics(written, fitted.known_pairs)
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value, abs=1e-6), name
    assert expected["unknown_pair_share"] == pytest.approx(17 / (ROWS - 4))
    assert metrics["rmse"] > 0
    assert metrics["mae"] <= metrics["rmse"]
    assert result.metrics == metrics

    assert content["model"] == {
        "uri": "models:/m/1",
        "resolved_uri": "models:/m/1",
        "name": "m",
        "version": "1",
        "run_id": "run1",
        "label": "m/1",
        "scoring": "scikit-learn (DictVectorizer fast path)",
    }
    assert content["input"]["uri"] == str(source)
    assert content["input"]["bytes"] == source.stat().st_size
    assert content["output"]["uri"] == str(tmp_path / "out" / OUTPUT)
    assert content["output"]["version_uri"] == str(tmp_path / "out" / VERSION)
    assert content["output"]["bytes"] == (tmp_path / "out" / OUTPUT).stat().st_size
    assert content["output"]["rows"] == written.num_rows
    assert (content["taxi_type"], content["month"]) == ("green", "2021-03")


def test_a_batch_with_no_scorable_trip_adds_no_unknown_pairs(tmp_path, fitted):
    table = setting(trips(), "PULocationID", dict.fromkeys(range(10), UNSEEN))  # batch 1
    table = setting(table, "trip_distance", dict.fromkeys(range(50, 100), -1.0))  # all of batch 2
    result, source = score(tmp_path, table, fitted, batch_size=50)
    content, written = assert_published(tmp_path, result, source)
    assert content["rows_dropped"]["invalid_distance"] == 50
    expected = expected_metrics(written, fitted.known_pairs)
    assert expected["unknown_pair_share"] == pytest.approx(10 / 250)
    assert content["metrics"]["unknown_pair_share"] == pytest.approx(
        expected["unknown_pair_share"], abs=1e-6
    )


# --- scoring again ----------------------------------------------------------------------------


def assert_readers_see_the_current_set(tmp_path: Path) -> pa.Table:
    """Plain readers of the root read the current set's rows and nothing else: not the versions
    kept under _versions/, not the manifest, not a lock or a staging file."""
    root = tmp_path / "out"
    current = pq.read_table(root / OUTPUT)
    labels = current["model_version"].unique().to_pylist()
    by_pandas = pd.read_parquet(root)
    by_dataset = ds.dataset(root, partitioning="hive").to_table()
    for read in (by_pandas["ride_id"].tolist(), by_dataset["ride_id"].to_pylist()):
        assert sorted(read) == sorted(current["ride_id"].to_pylist())
    assert by_pandas["model_version"].unique().tolist() == labels
    assert by_dataset["model_version"].unique().to_pylist() == labels
    return current


@pytest.mark.parametrize(
    "models",
    [
        pytest.param((MODEL, MODEL), id="same model"),
        pytest.param((MODEL, MODEL_2), id="a second model version"),
        pytest.param((MODEL, MODEL_2, MODEL), id="back to the first version"),
        pytest.param((MODEL_2, MODEL, MODEL_2, MODEL_2), id="second version, twice at the end"),
    ],
)
def test_scoring_a_month_again_switches_its_current_set(
    tmp_path, fitted, models: tuple[ModelRef, ...]
):
    """Each run replaces predictions.parquet and _manifest.json with its own (ride ids
    identical); every model version's set stays under _versions/, whole, its manifest in its
    footer; readers of the root see only the current set."""
    out = tmp_path / "out"
    kept: dict[str, tuple[pa.Table, dict]] = {}  # version file -> its rows and footer manifest
    first: pa.Table | None = None
    for run, model in enumerate(models):
        if run:  # mark the previous copy of the manifest, to see that it is replaced
            marked = {**manifest.current(month_output(tmp_path)), "mark": 1}
            (out / MANIFEST).write_text(json.dumps(marked))
            assert manifest.current(month_output(tmp_path)) == marked
        result, source = score(tmp_path, trips(), fitted, model=model, flow_run_id=f"run-{run}")
        content, written = assert_published(tmp_path, result, source)
        assert "mark" not in content
        assert content["flow_run_id"] == f"run-{run}"
        assert written["model_version"].unique().to_pylist() == [model.label]
        # The same rows every time (one pipeline behind both labels): only the label changes.
        first = written if first is None else first
        assert written["ride_id"].to_pylist() == first["ride_id"].to_pylist()
        assert written.drop_columns(["model_version"]).equals(first.drop_columns(["model_version"]))
        kept[version_file(model)] = (written, manifest.from_footer(str(out / OUTPUT)))
        assert_readers_see_the_current_set(tmp_path)

    assert [name for name in files(out) if name.startswith(VERSIONS)] == sorted(kept)
    for name, (rows, footer) in kept.items():
        assert pq.read_table(out / name).equals(rows)
        assert manifest.from_footer(str(out / name)) == footer
        assert footer["model"]["label"] == pq.read_table(out / name)["model_version"][0].as_py()
    assert manifest.current(month_output(tmp_path))["model"]["label"] == models[-1].label


# --- a failure at each step of publishing ------------------------------------------------------


def failing(original: Callable, *, after: bool) -> Callable:
    """`original`, made to fail like a store would: before doing anything, or once done."""

    def fail(*args: object, **kwargs: object) -> None:
        if after:
            original(*args, **kwargs)
        raise OSError("disk full")

    return fail


def fail_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    original = writes.AtomicParquetWriter.commit
    monkeypatch.setattr(writes.AtomicParquetWriter, "commit", failing(original, after=False))


def fail_switch(after: bool) -> Callable[[pytest.MonkeyPatch], None]:
    def patch(monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(writes, "publish_copy", failing(writes.publish_copy, after=after))

    return patch


def fail_manifest(after: bool) -> Callable[[pytest.MonkeyPatch], None]:
    def patch(monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(manifest, "write", failing(manifest.write, after=after))

    return patch


STEPS = [  # (how publishing fails, which set is current after it, whether the run fails)
    pytest.param(fail_commit, "previous", True, id="the version's commit fails"),
    pytest.param(fail_switch(after=False), "previous", True, id="the switch fails"),
    pytest.param(fail_switch(after=True), "new", True, id="the switch fails once done"),
    # once the set is switched, the run has published: the readable copy is only a copy
    pytest.param(fail_manifest(after=False), "new", False, id="the manifest copy fails"),
    pytest.param(
        fail_manifest(after=True), "new", False, id="the manifest copy fails once written"
    ),
]
BEFORE = [
    pytest.param(None, id="first scoring"),
    pytest.param(MODEL, id="after the same model"),
    pytest.param(MODEL_2, id="after another model"),
]
# The new run scores fewer rows than the previous one, so the rows tell the sets apart.
NEW_DROPPED = {0: NAN, 1: NAN, 2: NAN}


@pytest.mark.parametrize("previous", BEFORE)
@pytest.mark.parametrize(("fail", "left", "raises"), STEPS)
def test_a_failure_while_publishing_leaves_one_whole_set_and_its_manifest(
    tmp_path,
    fitted,
    monkeypatch,
    fail: Callable[[pytest.MonkeyPatch], None],
    left: str,
    raises: bool,
    previous: ModelRef | None,
):
    """Wherever publishing fails, the month's current set is the previous one or the new one,
    and `manifest.current` describes the file that is there; scoring again publishes it all."""
    out, output = tmp_path / "out", month_output(tmp_path)
    if previous is not None:
        score(tmp_path, trips(), fitted, model=previous, flow_run_id="run-a")
    fail(monkeypatch)
    new = setting(trips(), "trip_distance", NEW_DROPPED)
    if raises:
        with pytest.raises((OSError, ScoringError), match="disk full"):
            score(tmp_path, new, fitted, model=MODEL, flow_run_id="run-b")
    else:
        score(tmp_path, new, fitted, model=MODEL, flow_run_id="run-b")

    current = manifest.current(output)
    if left == "previous" and previous is None:
        assert current is None
        assert not (out / OUTPUT).exists()
    else:
        assert current is not None
        written = pq.read_table(out / OUTPUT)
        # The manifest describes the file there: its model, its rows, its run.
        assert written["model_version"].unique().to_pylist() == [current["model"]["label"]]
        assert current["output"]["rows"] == current["rows_scored"] == written.num_rows
        assert current["output"]["bytes"] == (out / OUTPUT).stat().st_size
        expected = (previous, ROWS, "run-a") if left == "previous" else (MODEL, ROWS - 3, "run-b")
        model, rows, run = expected
        assert (current["model"]["label"], written.num_rows) == (model.label, rows)
        assert current["flow_run_id"] == run
        assert current == manifest.with_file(
            manifest.from_footer(str(out / OUTPUT)), storage.file_info(str(out / OUTPUT))
        )
        assert_readers_see_the_current_set(tmp_path)
    assert not [name for name in files(out) if "/_lock" in name or "/." in name]

    monkeypatch.undo()
    result, source = score(tmp_path, new, fitted, model=MODEL, flow_run_id="run-c")
    content, written = assert_published(tmp_path, result, source)
    assert content["flow_run_id"] == "run-c"
    assert written.num_rows == ROWS - 3
    assert_readers_see_the_current_set(tmp_path)


# --- locks ------------------------------------------------------------------------------------


def lock_file(tmp_path: Path) -> Path:
    path = Path(month_output(tmp_path).lock.file(0))
    assert path.name == "_lock.000000.json"
    assert path.parent == tmp_path / "out" / FOLDER
    return path


def write_lock(tmp_path: Path, **holder) -> Path:
    path = lock_file(tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(holder))
    return path


def test_a_stale_lock_is_taken_over(tmp_path, fitted):
    """Who holds a lock and when it is gone: tests/test_locks.py; here, that scoring takes it."""
    stale = write_lock(tmp_path, owner="x", host="elsewhere", heartbeat=time.time() - 7200)
    result, source = score(tmp_path, trips(), fitted)
    assert_published(tmp_path, result, source)
    assert not stale.exists()


@pytest.mark.parametrize(
    "on_this_host", [True, False], ids=["live process on this host", "recent, on another host"]
)
@pytest.mark.parametrize("model", [MODEL, MODEL_2], ids=["same model", "another model"])
def test_a_live_lock_makes_the_month_busy_and_publishes_nothing(
    tmp_path, fitted, on_this_host, model
):
    """The lock is the month's, whatever the model: one run at a time scores a month."""
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        lock = write_lock(
            tmp_path,
            owner="someone-else",
            host=socket.gethostname() if on_this_host else "elsewhere",
            boot_id=boot_id(),
            pid=sleeper.pid,
            pid_start=process_start(sleeper.pid),
            since="2021-04-01T00:00:00+00:00",
            heartbeat=time.time(),
        )
        before = lock.read_text()
        with pytest.raises(ScoringError) as excinfo:
            score(tmp_path, trips(), fitted, model=model)
        message = assert_refused(excinfo, MonthBusyError, "green 2021-03 is being scored")
        assert "someone-else" in message
        assert files(tmp_path / "out") == [str(lock.relative_to(tmp_path / "out"))]
        assert lock.read_text() == before
        assert manifest.current(month_output(tmp_path)) is None
    finally:
        sleeper.kill()
        sleeper.wait()
