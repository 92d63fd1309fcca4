"""Where a month's output goes (`ride_duration.batch.paths`): its files, lock and run name."""

from __future__ import annotations

import pytest

from ride_duration.batch.paths import MonthOutput, model_file_stem, output_root, run_name
from ride_duration.core.errors import ConfigurationError
from ride_duration.core.months import Month
from ride_duration.model.resolve import ModelRef


def model(run_id: str | None) -> ModelRef:
    return ModelRef(
        uri="models:/m@a", resolved_uri="models:/m/3", name="m", version="3", run_id=run_id
    )


def test_a_month_scored_by_a_model_has_its_files_side_by_side():
    output = MonthOutput.of("s3://b/rides", "green", Month(2021, 3), model("abc123"))
    folder = "s3://b/rides/taxi_type=green/year=2021/month=03"
    assert output.data == f"{folder}/abc123.parquet"
    assert output.manifest == f"{folder}/_manifest-abc123.json"
    assert output.lock_file(7) == f"{folder}/_lock-abc123.000007.json"
    assert output.folder == folder
    assert run_name("green", Month(2021, 3)) == "score-green-2021-03"


@pytest.mark.parametrize(
    "run_id", ["../../x", "/etc/passwd", "a/b", "", "-rf", ".hidden", "x" * 200, "a b", "a\nb"]
)
def test_a_run_id_that_is_no_plain_name_never_names_a_file(run_id):
    if not run_id:  # no run: a hash of the location names the file
        assert model_file_stem(model(None)).startswith("model-")
        return
    with pytest.raises(ConfigurationError) as refused:
        model_file_stem(model(run_id))
    assert "not a plain name" in str(refused.value)


@pytest.mark.parametrize("run_id", ["ae7d5975c3a14e2c8f31c2a8d2e5b1f0", "run-1", "abc_2"])
def test_a_plain_run_id_names_the_file(run_id):
    assert model_file_stem(model(run_id)) == run_id


@pytest.mark.parametrize(
    ("requested", "allowed"),
    [("", True), ("output/experiments", True), ("output/../elsewhere", False), ("/etc", False)],
)
def test_a_run_may_only_write_inside_output_root(tmp_path, monkeypatch, requested, allowed):
    monkeypatch.chdir(tmp_path)
    if allowed:
        assert output_root("output", requested) == (requested or "output")
    else:
        with pytest.raises(ConfigurationError):
            output_root("output", requested)


MODEL = ModelRef(uri="x", resolved_uri="x", name="m", version="1", run_id="abc")


# --- output paths ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("root", "taxi_type", "year", "month", "model", "uri"),
    [
        (
            "root",
            "green",
            2021,
            3,
            MODEL,
            "root/taxi_type=green/year=2021/month=03/abc.parquet",
        ),
        (
            "root/",
            "green",
            2021,
            3,
            MODEL,
            "root/taxi_type=green/year=2021/month=03/abc.parquet",
        ),
        (
            "s3://bucket/predictions",
            "fhvhv",
            2023,
            12,
            ModelRef(
                uri="models:/m@prod", resolved_uri="models:/m/4", name="m", version="4", run_id="r9"
            ),
            "s3://bucket/predictions/taxi_type=fhvhv/year=2023/month=12/r9.parquet",
        ),
    ],
)
def test_output_uri(root, taxi_type, year, month, model, uri):
    assert MonthOutput.of(root, taxi_type, Month(year, month), model).data == uri


def test_a_model_without_a_run_is_named_by_a_hash_of_its_location():
    one = ModelRef(uri="/models/a", resolved_uri="/models/a")
    other = ModelRef(uri="/models/b", resolved_uri="/models/b")
    stem = model_file_stem(one)
    assert stem.startswith("model-")
    assert len(stem) == len("model-") + 16
    assert stem == model_file_stem(ModelRef(uri="elsewhere", resolved_uri="/models/a"))
    assert stem != model_file_stem(other)
    assert MonthOutput.of("out", "green", Month(2021, 3), one).data.endswith(
        f"/month=03/{stem}.parquet"
    )
