"""A model's folder on S3 copied with boto3 alone (`core.objects`), on moto's in-memory S3."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from ride_duration.core import objects

BUCKET = "models"
FILES = {
    "ride/MLmodel": b"run_id: r\n",
    "ride/forest.npz": b"arrays",
    "ride/model.pkl": b"pickle",
    "ride/nested/deeper/file.txt": b"deep",
    "ride/folder/": b"",  # a console's folder marker
    "ride-other/MLmodel": b"not this one",
}


@pytest.fixture
def s3(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        for key, body in FILES.items():
            client.put_object(Bucket=BUCKET, Key=key, Body=body)
        yield client


def files(folder) -> dict[str, bytes]:
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.mark.parametrize("uri", [f"s3://{BUCKET}/ride", f"s3://{BUCKET}/ride/"])
def test_a_whole_folder_is_copied_with_its_subfolders_and_nothing_beside_it(s3, tmp_path, uri):
    assert objects.copy_folder(uri, str(tmp_path)) == str(tmp_path)
    assert files(tmp_path) == {
        "MLmodel": b"run_id: r\n",
        "forest.npz": b"arrays",
        "model.pkl": b"pickle",
        "nested/deeper/file.txt": b"deep",
    }


def test_only_the_named_files_that_exist_are_copied(s3, tmp_path):
    objects.copy_folder(f"s3://{BUCKET}/ride", str(tmp_path), only=("MLmodel", "forest.npz", "x"))
    assert files(tmp_path) == {"MLmodel": b"run_id: r\n", "forest.npz": b"arrays"}


@pytest.mark.parametrize(
    ("uri", "error", "match"),
    [
        (f"s3://{BUCKET}/nothing-here", FileNotFoundError, "no files at s3://models/nothing-here"),
        ("s3://no-such-bucket/ride", FileNotFoundError, "NoSuchBucket"),
    ],
)
def test_a_missing_folder_or_bucket_is_not_found(s3, tmp_path, uri, error, match):
    with pytest.raises(error, match=match):
        objects.copy_folder(uri, str(tmp_path))


@pytest.mark.parametrize("key", ["ride/../../escape.txt", "ride/a/./b", "ride/a//b"])
def test_a_key_that_would_leave_the_folder_is_refused(s3, tmp_path, key):
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    target = tmp_path / "model"
    target.mkdir()
    with pytest.raises(PermissionError, match="leaves its folder"):
        objects.copy_folder(f"s3://{BUCKET}/ride", str(target))
    assert not (tmp_path / "escape.txt").exists()


def test_a_refused_read_is_a_permission_error(s3, tmp_path):
    resources = f'["arn:aws:s3:::{BUCKET}", "arn:aws:s3:::{BUCKET}/*"]'
    policy = '{"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": "*", '
    policy += f'"Action": "s3:*", "Resource": {resources}}}]}}'
    s3.put_bucket_policy(Bucket=BUCKET, Policy=policy)
    with pytest.raises(PermissionError, match="s3://models/ride: "):
        objects.copy_folder(f"s3://{BUCKET}/ride", str(tmp_path))
