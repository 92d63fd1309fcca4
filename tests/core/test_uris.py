"""Locations as text (`ride_duration.core.uris`): safe to log, free of credentials, inside what."""

from __future__ import annotations

import pytest

from ride_duration.core import uris
from ride_duration.core.errors import ConfigurationError


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("s3://user:secret@bucket/key.parquet", "s3://bucket/key.parquet"),
        ("https://user:secret@example.com/a/b.parquet", "https://example.com/a/b.parquet"),
        ("https://token@example.com/b.parquet", "https://example.com/b.parquet"),
        (
            "https://bucket.s3.amazonaws.com/k.parquet?X-Amz-Algorithm=AWS4&X-Amz-Signature=abc123",
            "https://bucket.s3.amazonaws.com/k.parquet",
        ),
        ("https://example.com/k.parquet?X-Amz-Signature=abc123", "https://example.com/k.parquet"),
        (
            "https://user:secret@example.com/k.parquet?X-Amz-Signature=abc123",
            "https://example.com/k.parquet",
        ),
        ("s3://bucket/key@2021.parquet", "s3://bucket/key@2021.parquet"),
        ("s3://bucket/prefix/key.parquet", "s3://bucket/prefix/key.parquet"),
        ("/data/green_tripdata_2021-03.parquet", "/data/green_tripdata_2021-03.parquet"),
        ("output/taxi_type=green/abc.parquet", "output/taxi_type=green/abc.parquet"),
    ],
)
def test_display_uri(uri, shown):
    assert uris.display_uri(uri) == shown
    assert "secret" not in uris.display_uri(uri)
    assert "Signature" not in uris.display_uri(uri)


@pytest.mark.parametrize(
    ("root", "parts", "joined"),
    [
        ("output", ("a", "b.parquet"), "output/a/b.parquet"),
        ("output/", ("a",), "output/a"),
        ("s3://bucket/prefix/", ("a", "b"), "s3://bucket/prefix/a/b"),
        ("/tmp/x", (), "/tmp/x"),
    ],
)
def test_join(root, parts, joined):
    assert uris.join(root, *parts) == joined


@pytest.mark.parametrize(
    "uri",
    [
        "https://t0k3n@mlflow.example.com",
        "https://user:s3cr3t@mlflow.example.com",
        "s3://key:s3cr3t@bucket/x",
        "https://example.com/k.parquet?X-Amz-Signature=s3cr3t",
        "https://example.com/k.parquet?token=t0k3n",
    ],
)
def test_a_uri_with_credentials_of_any_form_is_refused(uri):
    with pytest.raises(ConfigurationError) as refused:
        uris.check_no_credentials(uri, "model URI")
    assert "s3cr3t" not in str(refused.value)
    assert "t0k3n" not in str(refused.value)


@pytest.mark.parametrize(
    "uri", ["s3://bucket/key@2021.parquet", "https://example.com/a.parquet?version=2", "/data/x"]
)
def test_a_uri_without_credentials_passes(uri):
    uris.check_no_credentials(uri, "input")


@pytest.mark.parametrize(
    ("uri", "prefix", "under"),
    [
        ("/srv/models/a/model", "/srv/models/", True),
        ("/srv/models/a/model", "/srv/models", True),
        ("/srv/models", "/srv/models/", True),
        ("/srv/models/../../tmp/x", "/srv/models/", False),
        ("/srv/models-scratch/x", "/srv/models", False),
        ("/srv/models-scratch/x", "/srv/models/", False),
        ("file:///srv/models/a", "/srv/models", True),
        ("s3://company-models/a/b", "s3://company-models", True),
        ("s3://company-models/a/b", "s3://company-models/", True),
        ("s3://company-models-public/x", "s3://company-models", False),
        ("s3://company-models/a/../b", "s3://company-models/a", False),
        ("s3://company-models/ab/x", "s3://company-models/a", False),
        ("s3://other/company-models/x", "s3://company-models", False),
        ("models:/ride-duration@production", "models:/", True),
        ("runs:/abc/model", "models:/", False),
        ("mlflow-artifacts:/1/models/m/artifacts", "mlflow-artifacts:/", True),
        ("https://host/models/x", "https://host/models", True),
        ("https://host.evil/models/x", "https://host/models", False),
        ("https://user:pw@host/models/x", "https://host/models", True),
    ],
)
def test_a_location_is_under_a_prefix_by_whole_segments_and_buckets(uri, prefix, under):
    assert uris.is_under(uri, prefix) is under


def test_a_relative_prefix_is_the_folder_it_names_from_here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert uris.is_under(str(tmp_path / "mlruns" / "1" / "m"), "mlruns")
    assert not uris.is_under(str(tmp_path / "mlruns-old" / "m"), "./mlruns")


def test_a_symlink_out_of_a_trusted_folder_is_followed(tmp_path):
    (tmp_path / "trusted").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "trusted" / "link").symlink_to(tmp_path / "elsewhere")
    assert not uris.is_under(str(tmp_path / "trusted" / "link" / "m"), str(tmp_path / "trusted"))
