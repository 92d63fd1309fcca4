"""What scoring one month read, dropped, scored and wrote."""

from __future__ import annotations

from dataclasses import dataclass, field

from ride_duration.core.months import Month
from ride_duration.model.resolve import ModelRef
from ride_duration.monitoring.drift import ColumnDrift
from ride_duration.monitoring.profile import Profile


@dataclass
class MonthResult:
    """What scoring one month read, dropped, scored and wrote."""

    taxi_type: str
    month: Month
    input_uri: str
    output_uri: str
    model: ModelRef
    rows_read: int = 0
    rows_dropped: dict[str, int] = field(default_factory=dict)
    rows_scored: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float | None] = field(default_factory=dict)
    manifest_uri: str = ""
    scoring_path: str = ""  # how the model predicted: the compiled forest, scikit-learn, ...
    reference: Profile | None = None  # the model's reference profile, when it has one
    profile: Profile | None = None  # the month's, in the reference's bins
    drift: list[ColumnDrift] = field(default_factory=list)

    @property
    def label(self) -> str:
        """The month as "green 2021-03"."""
        return f"{self.taxi_type} {self.month}"
