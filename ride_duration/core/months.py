"""Data months: parsing "YYYY-MM", ranges, and the month a scheduled run should score."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from ride_duration.core.errors import ScoringError

FIRST_YEAR = 2009  # the TLC's first published trip records
LAST_YEAR = 2100  # a bound for arguments and forms, far beyond any month scored


class MonthError(ScoringError):
    """A month argument that is malformed, reversed or in the future."""


@dataclass(frozen=True, order=True)
class Month:
    """A calendar month of trip data."""

    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Month:
        """A month from "YYYY-MM"."""
        found = re.fullmatch(r"\s*(\d{4})-(\d{1,2})\s*", text)
        if not found or not 1 <= int(found.group(2)) <= 12:
            raise MonthError(f"{text!r} is not a month: write it as YYYY-MM, e.g. 2021-03")
        return cls(int(found.group(1)), int(found.group(2)))

    def shift(self, months: int) -> Month:
        """The month `months` later (earlier when negative)."""
        index = self.year * 12 + self.month - 1 + months
        return Month(index // 12, index % 12 + 1)

    def bounds(self) -> tuple[datetime, datetime]:
        """The first instant of this month and of the next one (naive, local time)."""
        after = self.shift(1)
        return datetime(self.year, self.month, 1), datetime(after.year, after.month, 1)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


def month_range(start: Month, end: Month) -> list[Month]:
    """Every month from `start` to `end`, both included."""
    if end < start:
        raise MonthError(f"the end month {end} is before the start month {start}")
    months, current = [], start
    while current <= end:
        months.append(current)
        current = current.shift(1)
    return months


def current_month(timezone: str, now: datetime | None = None) -> Month:
    """The month it is now in `timezone`."""
    local = (now or datetime.now(ZoneInfo("UTC"))).astimezone(ZoneInfo(timezone))
    return Month(local.year, local.month)


def check_past(months: list[Month], timezone: str, now: datetime | None = None) -> None:
    """Refuse months before the TLC's first data or not yet over."""
    this_month = current_month(timezone, now)
    if months and months[0].year < FIRST_YEAR:
        raise MonthError(f"{months[0]} is before {FIRST_YEAR}, when TLC trip records begin")
    if months and months[-1] >= this_month:
        raise MonthError(
            f"{months[-1]} is not over yet: the last complete month is {this_month.shift(-1)}"
        )


def scheduled_month(scheduled_start: datetime, timezone: str, lag_months: int) -> Month:
    """The data month for a run scheduled at `scheduled_start`: its local month minus the lag."""
    return current_month(timezone, scheduled_start).shift(-lag_months)
