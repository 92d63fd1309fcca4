"""Where a month's output goes, and what its runs are called: one type for the whole layout.

A month scored by one model is one data file in a hive-style partition, with its manifest
(written last) and, while a run scores it, its lock beside it:

    {root}/taxi_type=green/year=2021/month=03/{run id}.parquet
    {root}/taxi_type=green/year=2021/month=03/_manifest-{run id}.json
    {root}/taxi_type=green/year=2021/month=03/_lock-{run id}.{generation}.json

The leading underscore keeps parquet readers (pyarrow datasets, Spark, pandas) off the
manifest and the lock (`ride_duration.batch.locks`: the newest generation is the lock). Local and S3
outputs differ only in the root.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from dataclasses import dataclass

from ride_duration.core import storage, uris
from ride_duration.core.errors import ConfigurationError
from ride_duration.core.months import Month
from ride_duration.model.resolve import ModelRef


@dataclass(frozen=True)
class MonthOutput:
    """The files of one month's predictions by one model: data, manifest and lock."""

    data: str

    @classmethod
    def of(cls, root: str, taxi_type: str, month: Month, model: ModelRef) -> MonthOutput:
        """The output of `taxi_type`'s `month` scored by `model`, under `root`."""
        return cls(
            uris.join(
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
        return uris.join(folder, f"_manifest-{stem}.json")

    @property
    def folder(self) -> str:
        """The month's partition folder."""
        return self._folder_and_stem[0]

    @property
    def lock_stem(self) -> str:
        """The name every generation of this output's lock starts with."""
        return f"_lock-{self._folder_and_stem[1]}"

    @property
    def lock_prefix(self) -> str:
        """The location every generation of this output's lock starts with."""
        return uris.join(self.folder, self.lock_stem)

    def lock_file(self, generation: int) -> str:
        """One generation of the lock a run holds while it scores this month with this model."""
        return f"{self.lock_prefix}.{generation:06d}.json"


# What a run id may be to name a file: MLflow's are 32 hex digits; a registry can say anything.
SAFE_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


def model_file_stem(model: ModelRef) -> str:
    """The model's run id, or a short hash of its location when no run is known.

    A run id that is not a plain name (a registry answered `../x`, `/etc`, ...) never names a
    file: ConfigurationError.
    """
    if model.run_id:
        if not SAFE_RUN_ID.fullmatch(model.run_id):
            raise ConfigurationError(
                f"the model's run id {model.run_id[:80]!r} is not a plain name (letters, digits, "
                "- and _): it cannot name the output file"
            )
        return model.run_id
    return "model-" + hashlib.sha256(model.resolved_uri.encode()).hexdigest()[:16]


def run_name(taxi_type: str, month: Month) -> str:
    """The name of the flow run (and the artifact) that scores one month: score-green-2021-03."""
    return f"score-{taxi_type}-{month}"


def output_root(configured: str, requested: str | None) -> str:
    """The root a run writes under: OUTPUT_ROOT (`configured`), or a location inside it."""
    uris.check_no_credentials(configured, "OUTPUT_ROOT")
    if not requested:
        return configured
    uris.check_no_credentials(requested, "output_root")
    if not storage.is_within(requested, configured):
        raise ConfigurationError(
            f"output_root {uris.display_uri(requested)} is outside OUTPUT_ROOT "
            f"{uris.display_uri(configured)}: parameters may only choose a location inside it"
        )
    return requested
