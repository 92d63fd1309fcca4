"""Where a month's output goes, and what its runs are called: one type for the whole layout.

A month scored by one model is one data file in a hive-style partition, with its manifest
(written last) and, while a run scores it, its lock beside it:

    {root}/taxi_type=green/year=2021/month=03/{run id}.parquet
    {root}/taxi_type=green/year=2021/month=03/_manifest-{run id}.json
    {root}/taxi_type=green/year=2021/month=03/_lock-{run id}.json

The leading underscore keeps parquet readers (pyarrow datasets, Spark, pandas) off the
manifest and the lock. Local and S3 outputs differ only in the root.
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass

from ride_duration import storage
from ride_duration.errors import ConfigurationError
from ride_duration.model import ModelRef
from ride_duration.months import Month


@dataclass(frozen=True)
class MonthOutput:
    """The files of one month's predictions by one model: data, manifest and lock."""

    data: str

    @classmethod
    def of(cls, root: str, taxi_type: str, month: Month, model: ModelRef) -> MonthOutput:
        """The output of `taxi_type`'s `month` scored by `model`, under `root`."""
        return cls(
            storage.join(
                root,
                f"taxi_type={taxi_type}",
                f"year={month.year:04d}",
                f"month={month.month:02d}",
                f"{model_file_stem(model)}.parquet",
            )
        )

    @property
    def _folder_and_stem(self) -> tuple[str, str]:
        folder, name = posixpath.split(self.data)
        return folder, name.removesuffix(".parquet")

    @property
    def manifest(self) -> str:
        """The manifest: what was read, dropped, scored and written, by which model."""
        folder, stem = self._folder_and_stem
        return storage.join(folder, f"_manifest-{stem}.json")

    @property
    def lock(self) -> str:
        """The lock a run holds while it scores this month with this model."""
        folder, stem = self._folder_and_stem
        return storage.join(folder, f"_lock-{stem}.json")


def model_file_stem(model: ModelRef) -> str:
    """The model's run id, or a short hash of its location when no run is known."""
    if model.run_id:
        return model.run_id
    return "model-" + hashlib.sha256(model.resolved_uri.encode()).hexdigest()[:16]


def run_name(taxi_type: str, month: Month) -> str:
    """The name of the flow run (and the artifact) that scores one month: score-green-2021-03."""
    return f"score-{taxi_type}-{month}"


def output_root(configured: str, requested: str | None) -> str:
    """The root a run writes under: OUTPUT_ROOT (`configured`), or a location inside it."""
    storage.check_no_credentials(configured, "OUTPUT_ROOT")
    if not requested:
        return configured
    storage.check_no_credentials(requested, "output_root")
    if not storage.is_within(requested, configured):
        raise ConfigurationError(
            f"output_root {storage.display_uri(requested)} is outside OUTPUT_ROOT "
            f"{storage.display_uri(configured)}: parameters may only choose a location inside it"
        )
    return requested
