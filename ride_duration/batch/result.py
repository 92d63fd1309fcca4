"""What scoring one month read, dropped, scored and wrote."""

from __future__ import annotations

from dataclasses import dataclass, field

from ride_duration.core.months import Month
from ride_duration.model.resolve import ModelRef


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

    @property
    def label(self) -> str:
        """The month as "green 2021-03"."""
        return f"{self.taxi_type} {self.month}"
