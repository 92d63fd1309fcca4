"""Where a month's output goes, and what its runs are called: one type for the whole layout.

Each taxi type and month has one current set of predictions, the only data file in its
hive-style partition, so that every plain parquet reader of the root reads exactly one set
per month. Every model version's own set is kept under `_versions/`, which readers skip:

    {root}/taxi_type=green/year=2021/month=03/predictions.parquet          the current set
    {root}/taxi_type=green/year=2021/month=03/_manifest.json               its manifest (a copy)
    {root}/taxi_type=green/year=2021/month=03/_lock.{generation}.json      while a run scores it
    {root}/_versions/taxi_type=green/year=2021/month=03/{run id}.parquet   each version's set
    {root}/_monitoring/green-2021-03.parquet         the month's row of the monitoring table
    {root}/_reports/report-green.html                the monitoring report a deployment drew

A leading underscore (or dot) keeps pyarrow datasets, pandas, Spark and the documented DuckDB
glob off a file or folder. Local and S3 outputs differ only in the root.
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

CURRENT_FILE = "predictions.parquet"
MANIFEST_FILE = "_manifest.json"
VERSIONS_FOLDER = "_versions"
MONITORING_FOLDER = "_monitoring"
REPORTS_FOLDER = "_reports"  # the monitoring reports flows draw (orchestration.report_link)
LOCK_STEM = "_lock"


@dataclass(frozen=True)
class MonthOutput:
    """The files of one taxi type's month under one root: current set, manifest, lock, versions."""

    root: str
    taxi_type: str
    month: Month

    @property
    def partition(self) -> str:
        """The partition's path below the root: taxi_type=green/year=2021/month=03."""
        return posixpath.join(
            f"taxi_type={self.taxi_type}",
            f"year={self.month.year:04d}",
            f"month={self.month.month:02d}",
        )

    @property
    def folder(self) -> str:
        """The month's partition folder, which holds its current set and nothing else to read."""
        return uris.join(self.root, self.partition)

    @property
    def current(self) -> str:
        """The current set: the month's predictions as every reader of the root sees them."""
        return uris.join(self.folder, CURRENT_FILE)

    @property
    def manifest(self) -> str:
        """A copy of the current set's manifest (the file itself carries it in its footer)."""
        return uris.join(self.folder, MANIFEST_FILE)

    def version(self, model: ModelRef) -> str:
        """Where `model`'s set of this month is kept, current or not."""
        return uris.join(
            self.root, VERSIONS_FOLDER, self.partition, f"{model_file_stem(model)}.parquet"
        )

    @property
    def monitoring(self) -> str:
        """The month's row of the monitoring table (`batch.history`): its last checked run."""
        return uris.join(self.root, MONITORING_FOLDER, f"{self.taxi_type}-{self.month}.parquet")

    @property
    def lock(self) -> LockFiles:
        """The files of the lock a run holds while it scores this month."""
        return LockFiles(self.folder, LOCK_STEM)


@dataclass(frozen=True)
class LockFiles:
    """The generations of one lock: `{folder}/{stem}.{generation}.json`. Beside them may be an
    earlier version's lock, `{stem}-{run id}.json` or `{stem}-{run id}.{generation}.json`, and
    what a run killed while it created a generation left: `{stem}.{generation}.json.*`."""

    folder: str
    stem: str

    @property
    def prefix(self) -> str:
        """The location every generation of the lock starts with."""
        return uris.join(self.folder, self.stem)

    @property
    def pattern(self) -> str:
        """A glob of the names of every file of the lock's in its folder."""
        return f"{self.stem}*"

    def file(self, generation: int) -> str:
        """One generation of the lock."""
        return f"{self.prefix}.{generation:06d}.json"

    def generation(self, name: str) -> int | None:
        """The generation a file's name holds, None when the file is no generation."""
        found = re.fullmatch(rf"{re.escape(self.stem)}\.(\d+)\.json", name)
        return int(found.group(1)) if found else None

    def is_earlier_version(self, name: str) -> bool:
        """Whether a file's name is that of an earlier version's lock."""
        return re.fullmatch(rf"{re.escape(self.stem)}-[^/]+\.json", name) is not None


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
    """The root a run writes under: OUTPUT_ROOT (`configured`), or a hidden folder inside it.

    A root inside OUTPUT_ROOT must sit in a folder whose name starts with "_" (such as
    `output/_experiments`): readers of OUTPUT_ROOT skip those, so an experiment's months are
    never counted with the production ones.
    """
    uris.check_no_credentials(configured, "OUTPUT_ROOT")
    if not requested:
        return configured
    uris.check_no_credentials(requested, "output_root")
    below = storage.relative_to(requested, configured)
    if below is None:
        raise ConfigurationError(
            f"output_root {uris.display_uri(requested)} is outside OUTPUT_ROOT "
            f"{uris.display_uri(configured)}: parameters may only choose a location inside it"
        )
    if below and not below.startswith(("_", ".")):
        suggestion = uris.join(configured, "_" + below.split("/")[0])
        raise ConfigurationError(
            f"output_root {uris.display_uri(requested)} is inside OUTPUT_ROOT "
            f"{uris.display_uri(configured)}, whose readers would count its months with the "
            f"production ones: use a folder whose name starts with _, such as "
            f"{uris.display_uri(suggestion)}"
        )
    return requested
