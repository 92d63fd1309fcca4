"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tlc_data_dir() -> Path:
    """The folder of real TLC files named by TLC_DATA_DIR; tests that need it skip without it."""
    value = os.environ.get("TLC_DATA_DIR")
    if not value or not Path(value, "green_tripdata_2021-01.parquet").is_file():
        pytest.skip("TLC_DATA_DIR is not set to a folder of real TLC files")
    return Path(value)
