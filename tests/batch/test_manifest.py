"""A month's manifest (`batch.manifest`): built from the result, carried in its data file's
footer, copied beside the current set, and read back as the current set's manifest."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ride_duration.batch import manifest
from ride_duration.batch.output import OUTPUT_SCHEMA
from ride_duration.batch.paths import MonthOutput
from ride_duration.batch.result import MonthResult
from ride_duration.batch.sink import ParquetFolder
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
MONTH = Month(2021, 3)


def result(output_uri: str, rows: int) -> MonthResult:
    return MonthResult(
        "green",
        MONTH,
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


def predictions(rows: int, label: str = MODEL.label) -> pa.Table:
    """`rows` rows in the output's schema, scored by the model `label`."""
    return pa.Table.from_pylist(
        [
            {
                "ride_id": f"r{row}",
                "pickup_datetime": datetime(2021, 3, 1, 8, row),
                "PULocationID": 1,
                "DOLocationID": 2,
                "actual_duration": 10.0,
                "predicted_duration": 9.0,
                "diff": 1.0,
                "model_version": label,
            }
            for row in range(rows)
        ],
        schema=OUTPUT_SCHEMA,
    )


def build(output: MonthOutput, version_uri: str, rows: int) -> dict:
    return manifest.build(
        result(output.current, rows),
        input_info={"bytes": 10},
        version_uri=version_uri,
        flow_run_id=None,
        started_at=datetime(2026, 12, 2, tzinfo=UTC),
        code_version="git:abc",
    )


@pytest.fixture
def output(tmp_path: Path) -> MonthOutput:
    return MonthOutput(str(tmp_path / "out"), "green", MONTH)


@pytest.fixture
def published(output: MonthOutput) -> dict:
    """A month of 3 rows published as score_month publishes it; its manifest as built."""
    sink = ParquetFolder(output, stale_after_seconds=60)
    staged = sink.stage(MODEL)
    staged.write(predictions(3))
    content = build(output, staged.uri, 3)
    sink.publish(staged, content)
    return content


def on_file(output: MonthOutput, content: dict) -> dict:
    """`content` with the current file's size and version tag, as `current` returns it."""
    return manifest.with_file(content, storage.file_info(output.current))


def test_the_manifest_holds_the_month_the_model_and_the_files(output, published):
    content = published
    assert content["manifest_version"] == manifest.MANIFEST_VERSION == 2
    assert content["month"] == "2021-03"
    assert content["rows_scored"] == content["output"]["rows"] == 3
    assert content["output"]["uri"] == output.current
    assert content["output"]["version_uri"] == output.version(MODEL)
    assert content["model"]["uri"] == "https://host/model"  # no credentials
    assert content["model"]["label"] == "m/2"
    assert content["model"]["scoring"] == "compiled forest"
    assert content["code_version"] == "git:abc"
    # The footer of both files carries the manifest as built; the copy adds the file's info.
    assert manifest.from_footer(output.current) == content
    assert manifest.from_footer(output.version(MODEL)) == content
    assert manifest.current(output) == on_file(output, content)
    assert manifest.parse(Path(output.manifest).read_text()) == on_file(output, content)
    assert on_file(output, content)["output"]["bytes"] == Path(output.current).stat().st_size


@pytest.mark.parametrize(
    ("version_uri", "recorded"),
    [
        ("out/_versions/abc.parquet", "out/_versions/abc.parquet"),
        ("s3://bucket/_versions/abc.parquet", "s3://bucket/_versions/abc.parquet"),
        ("s3://key:secret@bucket/_versions/abc.parquet", "s3://bucket/_versions/abc.parquet"),
        ("https://token@host/v/abc.parquet?X-Amz-Signature=s", "https://host/v/abc.parquet"),
    ],
)
def test_the_version_uri_is_recorded_without_credentials(output, version_uri, recorded):
    assert build(output, version_uri, 3)["output"]["version_uri"] == recorded


def test_with_file_adds_the_file_info_and_leaves_the_manifest_alone(output):
    content = build(output, "v.parquet", 3)
    before = json.dumps(content, sort_keys=True)
    info = {"bytes": 7, "etag": "e", "modified": "1.5"}
    described = manifest.with_file(content, info)
    assert described["output"] == {**content["output"], **info}
    assert {k: v for k, v in described.items() if k != "output"} == {
        k: v for k, v in content.items() if k != "output"
    }
    assert json.dumps(content, sort_keys=True) == before


# --- which manifest is the current set's -------------------------------------------------------

Sidecar = Callable[[dict], str | bytes | None]


def marked(content: dict, **output: object) -> str:
    """A copy of `content`, marked so that it can be told from the footer's, with `output` set."""
    changed = json.loads(json.dumps(content))
    changed["mark"] = "sidecar"
    changed["output"].update(output)
    return json.dumps(changed)


def with_version(content: dict, version: object) -> str:
    changed = json.loads(marked(content))
    changed["manifest_version"] = version
    return json.dumps(changed)


def without_output(content: dict) -> str:
    changed = json.loads(marked(content))
    changed["output"] = "predictions.parquet"
    return json.dumps(changed)


@pytest.mark.parametrize(
    ("sidecar", "source"),
    [
        pytest.param(marked, "sidecar", id="matching: the sidecar"),
        pytest.param(lambda c: marked(c, bytes=c["output"]["bytes"] + 1), "footer", id="size"),
        pytest.param(lambda c: marked(c, modified="0.0"), "footer", id="modified time"),
        pytest.param(lambda c: marked(c, modified=None), "footer", id="no modified time"),
        pytest.param(lambda c: marked(c, etag="0123abcd"), "footer", id="etag"),
        pytest.param(lambda c: marked(c, bytes=None), "footer", id="no size"),
        pytest.param(without_output, "footer", id="output not an object"),
        pytest.param(lambda _: None, "footer", id="missing"),
        pytest.param(lambda _: "", "footer", id="empty"),
        pytest.param(lambda _: "{", "footer", id="not json"),
        pytest.param(lambda _: "[]", "footer", id="a list"),
        pytest.param(lambda _: "null", "footer", id="null"),
        pytest.param(lambda _: "[" * 100_000, "footer", id="nested too deep"),
        pytest.param(lambda c: marked(c)[:-20], "footer", id="cut short"),
        pytest.param(lambda _: b"\xff\xfe\x00garbage\x80", "footer", id="binary garbage"),
        pytest.param(lambda c: with_version(c, 1), "footer", id="manifest_version 1"),
        pytest.param(lambda c: with_version(c, 3), "footer", id="manifest_version 3"),
        pytest.param(lambda c: with_version(c, "2"), "footer", id="manifest_version as text"),
    ],
)
def test_current_is_the_sidecar_only_when_it_describes_the_file(
    output, published, sidecar: Sidecar, source: str
):
    """A stale, missing or damaged `_manifest.json` gives way to the footer's manifest."""
    copy = Path(output.manifest)
    text = sidecar(on_file(output, published))
    if text is None:
        copy.unlink()
    elif isinstance(text, bytes):
        copy.write_bytes(text)
    else:
        copy.write_text(text)
    current = manifest.current(output)
    if source == "sidecar":
        assert current == json.loads(copy.read_text())
        assert current["mark"] == "sidecar"
    else:
        assert current == on_file(output, published)
        assert current == manifest.with_file(
            manifest.from_footer(output.current), storage.file_info(output.current)
        )
    assert copy.exists() == (text is not None)  # reading never repairs or removes the copy


MODEL_B = ModelRef(uri="models:/m/3", resolved_uri="models:/m/3", name="m", version="3", run_id="b")


@pytest.mark.parametrize(
    ("model", "rows"),
    [(MODEL, 3), (MODEL, 4), (MODEL_B, 3), (MODEL_B, 5)],
    ids=["same model, same rows", "same model, more rows", "another model", "another, more"],
)
def test_a_copy_left_by_the_previous_set_gives_way_to_the_footer(
    output, published, model: ModelRef, rows: int
):
    """A run that died between switching the set and copying its manifest leaves the previous
    set's copy: it describes another file, so the new file's footer speaks."""
    previous = Path(output.manifest).read_text()
    sink = ParquetFolder(output, stale_after_seconds=60)
    staged = sink.stage(model)
    staged.write(predictions(rows, model.label))
    content = manifest.build(
        MonthResult("green", MONTH, "in.parquet", output.current, model, rows_scored=rows),
        input_info={},
        version_uri=staged.uri,
        flow_run_id="second",
        started_at=datetime(2026, 12, 3, tzinfo=UTC),
        code_version="git:def",
    )
    sink.publish(staged, content)
    assert manifest.current(output)["flow_run_id"] == "second"
    Path(output.manifest).write_text(previous)

    current = manifest.current(output)
    assert current == on_file(output, content)
    assert current["model"]["label"] == model.label
    assert current["output"]["rows"] == pq.read_metadata(output.current).num_rows == rows


def plain_parquet(output: MonthOutput) -> None:
    pq.write_table(predictions(2), output.current)


def footer_of(metadata: dict[bytes, bytes]) -> Callable[[MonthOutput], None]:
    def write(output: MonthOutput) -> None:
        pq.write_table(predictions(2).replace_schema_metadata(metadata), output.current)

    return write


def removed(output: MonthOutput) -> None:
    Path(output.current).unlink()


def nothing_published(output: MonthOutput) -> None:
    for path in Path(output.root).rglob("*"):
        if path.is_file():
            path.unlink()


OLD_FOOTER = {manifest.FOOTER_KEY: json.dumps({"manifest_version": 1}).encode()}


@pytest.mark.parametrize(
    ("damage", "keep_sidecar"),
    [
        pytest.param(nothing_published, False, id="no month at all"),
        pytest.param(removed, True, id="no current file, its sidecar left"),
        pytest.param(removed, False, id="no current file, no sidecar"),
        pytest.param(plain_parquet, True, id="a parquet file without a footer manifest"),
        pytest.param(plain_parquet, False, id="a parquet file without footer manifest or copy"),
        pytest.param(footer_of(OLD_FOOTER), True, id="a footer manifest of version 1"),
        pytest.param(footer_of({manifest.FOOTER_KEY: b"{"}), True, id="a footer of garbage"),
        pytest.param(footer_of({manifest.FOOTER_KEY: b"\xff"}), True, id="a footer of bytes"),
        pytest.param(footer_of({b"other": b"{}"}), True, id="another key in the footer"),
        pytest.param(lambda o: Path(o.current).write_text("not parquet"), True, id="not parquet"),
        pytest.param(lambda o: Path(o.current).write_bytes(b""), True, id="an empty file"),
        pytest.param(lambda o: Path(o.current).write_bytes(b"PAR1" * 3), True, id="magic only"),
    ],
)
def test_current_is_none_without_a_file_of_ours(
    output, published, damage: Callable[[MonthOutput], None], keep_sidecar: bool
):
    """No current file, or one no footer manifest of ours vouches for: no manifest."""
    damage(output)
    if not keep_sidecar:
        Path(output.manifest).unlink(missing_ok=True)
    assert manifest.current(output) is None


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        (None, None),
        ("", None),
        ("{", None),
        ("[]", None),
        ("1", None),
        ('"text"', None),
        ("{}", None),
        ('{"manifest_version": 1, "month": "2021-03"}', None),
        ('{"manifest_version": null}', None),
        (
            '{"manifest_version": 2, "month": "2021-03"}',
            {"manifest_version": 2, "month": "2021-03"},
        ),
        ("[" * 100_000 + "]" * 100_000, None),
    ],
)
def test_parse(text: str | None, parsed: dict | None):
    assert manifest.parse(text) == parsed
