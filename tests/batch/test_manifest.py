"""A month's manifest (`batch.manifest`): built from the result, written last, checked on read."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ride_duration.batch import manifest
from ride_duration.batch.paths import MonthOutput
from ride_duration.batch.result import MonthResult
from ride_duration.core import storage
from ride_duration.core.months import Month
from ride_duration.model.resolve import ModelRef

MODEL = ModelRef(
    uri="https://user:secret@host/model",
    resolved_uri="models:/m/2",
    name="m",
    version="2",
    run_id="abc",
)


def result(output_uri: str, rows: int) -> MonthResult:
    return MonthResult(
        "green",
        Month(2021, 3),
        "in.parquet",
        output_uri,
        MODEL,
        rows_read=rows + 1,
        rows_dropped={"pickup_outside_month": 1},
        rows_scored=rows,
        metrics={"rmse": 5.0},
        scoring_path="compiled forest",
        seconds={"total": 1.0},
    )


@pytest.fixture
def scored(tmp_path):
    """A committed output file of 3 rows and its manifest, as score_month leaves them."""
    output = str(tmp_path / "taxi_type=green" / "abc.parquet")
    (tmp_path / "taxi_type=green").mkdir()
    pq.write_table(pa.table({"ride_id": ["a", "b", "c"]}), output)
    content = manifest.build(
        result(output, 3),
        input_info={"bytes": 10},
        output_info=storage.file_info(output),
        flow_run_id=None,
        started_at=datetime(2026, 12, 2, tzinfo=UTC),
        code_version="git:abc",
    )
    manifest.write(output, content)
    return output, content


def test_the_manifest_holds_the_month_the_model_and_the_files(scored):
    output, content = scored
    assert content["month"] == "2021-03"
    assert content["rows_scored"] == content["output"]["rows"] == 3
    assert content["model"]["uri"] == "https://host/model"  # no credentials
    assert content["model"]["label"] == "m/2"
    assert content["model"]["scoring"] == "compiled forest"
    assert content["code_version"] == "git:abc"
    assert manifest.read(output) == content
    assert manifest.is_complete(output)


@pytest.mark.parametrize(
    "damage",
    [
        "no manifest",
        "not json",
        "a list",
        "another version",
        "more rows than the file",
        "another size",
        "another file's uri",
    ],
)
def test_a_manifest_that_does_not_match_its_file_is_not_complete(scored, damage):
    output, content = scored
    path = MonthOutput(output).manifest
    changed = json.loads(json.dumps(content))
    if damage == "no manifest":
        storage.remove(path)
    elif damage == "not json":
        Path(path).write_text("{")
    elif damage == "a list":
        Path(path).write_text("[]")
    else:
        if damage == "another version":
            changed["manifest_version"] = 0
        elif damage == "more rows than the file":
            changed["output"]["rows"] = 4
        elif damage == "another size":
            changed["output"]["bytes"] += 1
        else:
            changed["output"]["uri"] = output + ".old"
        manifest.write(output, changed)
    assert not manifest.is_complete(output)


def test_a_file_without_its_data_is_not_complete(scored):
    output, _ = scored
    storage.remove(output)
    assert not manifest.is_complete(output)
    assert manifest.read(output) is not None
