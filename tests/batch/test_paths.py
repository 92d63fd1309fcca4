"""Where a month's output goes (`ride_duration.batch.paths`): its files, lock and run name."""

from __future__ import annotations

from pathlib import Path

import pytest

from ride_duration.batch.paths import (
    LockFiles,
    MonthOutput,
    model_file_stem,
    output_root,
    run_name,
)
from ride_duration.core.errors import ConfigurationError
from ride_duration.core.months import Month
from ride_duration.model.resolve import ModelRef


def model(run_id: str | None) -> ModelRef:
    return ModelRef(
        uri="models:/m@a", resolved_uri="models:/m/3", name="m", version="3", run_id=run_id
    )


def test_a_month_has_one_current_set_with_its_manifest_and_lock_beside_it():
    output = MonthOutput("s3://b/rides", "green", Month(2021, 3))
    folder = "s3://b/rides/taxi_type=green/year=2021/month=03"
    assert output.folder == folder
    assert output.current == f"{folder}/predictions.parquet"
    assert output.manifest == f"{folder}/_manifest.json"
    assert output.lock == LockFiles(folder, "_lock")
    assert output.lock.prefix == f"{folder}/_lock"
    assert output.lock.file(7) == f"{folder}/_lock.000007.json"
    assert output.lock.file(1_234_567) == f"{folder}/_lock.1234567.json"
    assert run_name("green", Month(2021, 3)) == "score-green-2021-03"


def test_every_model_version_keeps_its_own_set_where_readers_of_the_root_do_not_look():
    output = MonthOutput("s3://b/rides", "green", Month(2021, 3))
    assert output.version(model("abc123")) == (
        "s3://b/rides/_versions/taxi_type=green/year=2021/month=03/abc123.parquet"
    )
    assert output.version(model("abc123")) != output.version(model("def456"))
    # one month, one current set and one lock, whatever the model
    assert output == MonthOutput("s3://b/rides", "green", Month(2021, 3))


@pytest.mark.parametrize(
    "run_id", ["../../x", "/etc/passwd", "a/b", "", "-rf", ".hidden", "x" * 200, "a b", "a\nb"]
)
def test_a_run_id_that_is_no_plain_name_never_names_a_file(run_id: str):
    if not run_id:  # no run: a hash of the location names the file
        assert model_file_stem(model(None)).startswith("model-")
        return
    with pytest.raises(ConfigurationError) as refused:
        model_file_stem(model(run_id))
    assert "not a plain name" in str(refused.value)
    with pytest.raises(ConfigurationError):
        MonthOutput("out", "green", Month(2021, 3)).version(model(run_id))


@pytest.mark.parametrize("run_id", ["ae7d5975c3a14e2c8f31c2a8d2e5b1f0", "run-1", "abc_2"])
def test_a_plain_run_id_names_the_file(run_id: str):
    assert model_file_stem(model(run_id)) == run_id


# --- the root a run writes under --------------------------------------------------------------


@pytest.mark.parametrize(
    ("configured", "requested", "written"),
    [
        ("output", "", "output"),
        ("output", None, "output"),
        ("output", "output", "output"),
        ("output/", "output", "output"),
        ("output", "output/_experiments", "output/_experiments"),
        ("output", "output/_experiments/alice/try-2", "output/_experiments/alice/try-2"),
        ("output", "output/.scratch", "output/.scratch"),
        ("s3://b/out", "s3://b/out/_experiments", "s3://b/out/_experiments"),
        ("s3://b/out/", "s3://b/out/_x/y", "s3://b/out/_x/y"),
    ],
)
def test_a_run_may_write_to_output_root_or_a_hidden_folder_inside_it(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    configured: str,
    requested: str | None,
    written: str,
):
    monkeypatch.chdir(tmp_path)
    assert output_root(configured, requested) == written


@pytest.mark.parametrize(
    ("configured", "requested", "refusal"),
    [
        # outside OUTPUT_ROOT
        ("output", "output/../elsewhere", "is outside OUTPUT_ROOT output"),
        ("output", "/etc", "is outside OUTPUT_ROOT output"),
        ("output", "output-scratch/_x", "is outside OUTPUT_ROOT output"),
        ("output", "output/_x/../../elsewhere", "is outside OUTPUT_ROOT output"),
        ("s3://b/out", "s3://b/out-x", "is outside OUTPUT_ROOT s3://b/out"),
        ("s3://b/out", "s3://other/out/_x", "is outside OUTPUT_ROOT s3://b/out"),
        ("s3://b/out", "s3://b/out/_x/../../y", "is outside OUTPUT_ROOT s3://b/out"),
        ("s3://b/out", "output/_x", "is outside OUTPUT_ROOT s3://b/out"),
        # inside, but where readers of OUTPUT_ROOT would count its months
        ("output", "output/experiments", "such as output/_experiments"),
        ("output", "output/experiments/_alice", "such as output/_experiments"),
        ("output", "output/_x/../experiments", "such as output/_experiments"),
        ("output", "output/taxi_type=green", "such as output/_taxi_type=green"),
        ("output/", "output/experiments/", "such as output/_experiments"),
        ("s3://b/out", "s3://b/out/exp/a", "such as s3://b/out/_exp"),
        # credentials
        ("output", "s3://b/out/_x?X-Amz-Signature=s", "carries credentials"),
        ("s3://user:secret@b/out", "", "carries credentials"),
    ],
)
def test_a_run_may_not_write_outside_output_root_nor_beside_its_months(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, configured: str, requested: str, refusal: str
):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError) as refused:
        output_root(configured, requested)
    message = str(refused.value)
    assert refusal in message
    assert len(message.splitlines()) == 1
    assert "secret" not in message
    assert "Signature" not in message


def test_a_hidden_folder_that_is_a_link_out_of_output_root_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "output").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "output" / "_escape").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigurationError, match="is outside OUTPUT_ROOT"):
        output_root("output", "output/_escape")


# --- output paths ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("root", "taxi_type", "month", "run_id", "current", "version"),
    [
        (
            "root",
            "green",
            Month(2021, 3),
            "abc",
            "root/taxi_type=green/year=2021/month=03/predictions.parquet",
            "root/_versions/taxi_type=green/year=2021/month=03/abc.parquet",
        ),
        (
            "root/",
            "green",
            Month(2021, 3),
            "abc",
            "root/taxi_type=green/year=2021/month=03/predictions.parquet",
            "root/_versions/taxi_type=green/year=2021/month=03/abc.parquet",
        ),
        (
            "/abs/root/_experiments/a",
            "yellow",
            Month(999, 1),
            "abc",
            "/abs/root/_experiments/a/taxi_type=yellow/year=0999/month=01/predictions.parquet",
            "/abs/root/_experiments/a/_versions/taxi_type=yellow/year=0999/month=01/abc.parquet",
        ),
        (
            "s3://bucket/predictions",
            "fhvhv",
            Month(2023, 12),
            "r9",
            "s3://bucket/predictions/taxi_type=fhvhv/year=2023/month=12/predictions.parquet",
            "s3://bucket/predictions/_versions/taxi_type=fhvhv/year=2023/month=12/r9.parquet",
        ),
    ],
)
def test_output_uris(
    root: str, taxi_type: str, month: Month, run_id: str, current: str, version: str
):
    output = MonthOutput(root, taxi_type, month)
    assert output.current == current
    assert output.version(model(run_id)) == version


def test_a_model_without_a_run_is_named_by_a_hash_of_its_location():
    one = ModelRef(uri="/models/a", resolved_uri="/models/a")
    other = ModelRef(uri="/models/b", resolved_uri="/models/b")
    stem = model_file_stem(one)
    assert stem.startswith("model-")
    assert len(stem) == len("model-") + 16
    assert stem == model_file_stem(ModelRef(uri="elsewhere", resolved_uri="/models/a"))
    assert stem != model_file_stem(other)
    assert (
        MonthOutput("out", "green", Month(2021, 3))
        .version(one)
        .endswith(f"/month=03/{stem}.parquet")
    )
