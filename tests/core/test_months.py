"""Data months: parsing, shifting, ranges and the month a run scores (`core.months`)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ride_duration.core.errors import ScoringError
from ride_duration.core.months import (
    Month,
    MonthError,
    check_past,
    current_month,
    month_range,
    scheduled_month,
)

NEW_YORK = "America/New_York"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# --- Month.parse and str ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "month"),
    [
        ("2021-03", Month(2021, 3)),
        ("2021-3", Month(2021, 3)),
        (" 2021-03 ", Month(2021, 3)),
        ("2021-12", Month(2021, 12)),
        ("2009-01", Month(2009, 1)),
    ],
)
def test_parse_accepts(text, month):
    assert Month.parse(text) == month


@pytest.mark.parametrize(
    "text",
    ["2021-13", "2021-00", "21-03", "2021/03", "march", "", "2021-003", "2021-03-01", "2021"],
)
def test_parse_rejects(text):
    with pytest.raises(MonthError, match="YYYY-MM") as raised:
        Month.parse(text)
    assert repr(text) in str(raised.value)
    assert isinstance(raised.value, ScoringError)
    assert raised.value.exit_code == 2


@pytest.mark.parametrize(
    ("month", "text"),
    [
        (Month(2021, 3), "2021-03"),
        (Month(2021, 12), "2021-12"),
        (Month(2009, 1), "2009-01"),
        (Month(999, 7), "0999-07"),
    ],
)
def test_str_zero_pads(month, text):
    assert str(month) == text


def test_months_order_by_year_then_month():
    assert Month(2020, 12) < Month(2021, 1) < Month(2021, 2) < Month(2022, 1)


# --- Month.shift --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("month", "by", "shifted"),
    [
        (Month(2021, 3), 0, Month(2021, 3)),
        (Month(2021, 3), 1, Month(2021, 4)),
        (Month(2021, 3), -2, Month(2021, 1)),
        (Month(2021, 1), -1, Month(2020, 12)),
        (Month(2021, 12), 1, Month(2022, 1)),
        (Month(2021, 12), 12, Month(2022, 12)),
        (Month(2021, 1), 12, Month(2022, 1)),
        (Month(2021, 1), -12, Month(2020, 1)),
        (Month(2021, 3), 25, Month(2023, 4)),
        (Month(2021, 3), -13, Month(2020, 2)),
        (Month(2021, 1), -13, Month(2019, 12)),
        (Month(2020, 12), 25, Month(2023, 1)),
    ],
)
def test_shift(month, by, shifted):
    assert month.shift(by) == shifted
    assert shifted.shift(-by) == month


# --- month_range --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "months"),
    [
        ("2021-03", "2021-03", ["2021-03"]),
        ("2021-01", "2021-04", ["2021-01", "2021-02", "2021-03", "2021-04"]),
        ("2020-11", "2021-02", ["2020-11", "2020-12", "2021-01", "2021-02"]),
        ("2019-12", "2020-01", ["2019-12", "2020-01"]),
    ],
)
def test_month_range_is_inclusive(start, end, months):
    found = month_range(Month.parse(start), Month.parse(end))
    assert [str(month) for month in found] == months


def test_month_range_across_two_years_has_every_month_once():
    found = month_range(Month(2019, 6), Month(2021, 5))
    assert len(found) == 24
    assert len(set(found)) == 24
    assert found == sorted(found)


@pytest.mark.parametrize(
    ("start", "end"),
    [("2021-05", "2021-01"), ("2021-01", "2020-12"), ("2022-03", "2021-03")],
)
def test_month_range_refuses_an_end_before_the_start(start, end):
    with pytest.raises(MonthError) as raised:
        month_range(Month.parse(start), Month.parse(end))
    assert str(raised.value) == f"the end month {end} is before the start month {start}"


# --- current_month ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "timezone", "month"),
    [
        # 02:00 UTC on the 1st is still the evening of the 31st in New York, already in Paris
        (utc(2026, 11, 1, 2), NEW_YORK, Month(2026, 10)),
        (utc(2026, 11, 1, 2), "Europe/Paris", Month(2026, 11)),
        (utc(2026, 11, 1, 2), "UTC", Month(2026, 11)),
        # New Year: New York is in the old year until 05:00 UTC
        (utc(2027, 1, 1, 4, 59), NEW_YORK, Month(2026, 12)),
        (utc(2027, 1, 1, 5), NEW_YORK, Month(2027, 1)),
        # 22:30 UTC on the last day is already the next month east of UTC
        (utc(2026, 10, 31, 22, 30), "Asia/Tokyo", Month(2026, 11)),
        (utc(2026, 10, 31, 22, 30), NEW_YORK, Month(2026, 10)),
    ],
)
def test_current_month_is_the_month_in_the_time_zone(now, timezone, month):
    assert current_month(timezone, now) == month


def test_current_month_defaults_to_now():
    before = datetime.now(UTC)
    found = current_month("UTC")
    after = datetime.now(UTC)
    assert found in {Month(before.year, before.month), Month(after.year, after.month)}


# --- check_past ---------------------------------------------------------------------------

# In New York it is still 2026-10 at this instant: 2026-09 is the last complete month.
NOW = utc(2026, 11, 1, 2)


@pytest.mark.parametrize(
    ("start", "end", "timezone", "says"),
    [
        ("2026-10", "2026-10", NEW_YORK, "2026-10 is not over yet"),
        ("2026-01", "2026-10", NEW_YORK, "2026-10 is not over yet"),
        ("2026-01", "2026-11", NEW_YORK, "2026-11 is not over yet"),
        ("2026-01", "2099-01", NEW_YORK, "2099-01 is not over yet"),
        ("2026-11", "2026-11", "Europe/Paris", "2026-11 is not over yet"),
    ],
)
def test_check_past_refuses_months_not_over(start, end, timezone, says):
    with pytest.raises(MonthError) as raised:
        check_past(month_range(Month.parse(start), Month.parse(end)), timezone, NOW)
    last = current_month(timezone, NOW).shift(-1)
    assert str(raised.value) == f"{says}: the last complete month is {last}"


def test_check_past_names_the_last_complete_month_of_the_time_zone():
    with pytest.raises(MonthError, match=r"the last complete month is 2026-09$"):
        check_past([Month(2026, 10)], NEW_YORK, NOW)
    with pytest.raises(MonthError, match=r"the last complete month is 2026-10$"):
        check_past([Month(2026, 11)], "Europe/Paris", NOW)


@pytest.mark.parametrize(("start", "end"), [("2008-12", "2009-02"), ("2000-01", "2000-01")])
def test_check_past_refuses_months_before_2009(start, end):
    with pytest.raises(MonthError) as raised:
        check_past(month_range(Month.parse(start), Month.parse(end)), NEW_YORK, NOW)
    assert str(raised.value) == f"{start} is before 2009, when TLC trip records begin"


@pytest.mark.parametrize(
    ("start", "end", "timezone"),
    [
        ("2009-01", "2009-01", NEW_YORK),
        ("2021-01", "2021-05", NEW_YORK),
        ("2026-01", "2026-09", NEW_YORK),
        # already November in Paris: October is over there
        ("2026-10", "2026-10", "Europe/Paris"),
    ],
)
def test_check_past_accepts_past_months(start, end, timezone):
    assert check_past(month_range(Month.parse(start), Month.parse(end)), timezone, NOW) is None


def test_check_past_accepts_no_months():
    assert check_past([], NEW_YORK, NOW) is None


# --- scheduled_month ----------------------------------------------------------------------

# deployment.yaml fires "0 6 3 * *" in America/New_York: 06:00 EST is 11:00 UTC, EDT 10:00 UTC.


@pytest.mark.parametrize(
    ("scheduled_start", "lag", "month"),
    [
        (utc(2026, 11, 3, 11), 3, Month(2026, 8)),
        (utc(2026, 11, 3, 11), 0, Month(2026, 11)),
        (utc(2026, 11, 3, 11), 2, Month(2026, 9)),
        (utc(2026, 11, 3, 11), 12, Month(2025, 11)),
        (utc(2026, 1, 3, 11), 3, Month(2025, 10)),
        (utc(2026, 1, 3, 11), 1, Month(2025, 12)),
        (utc(2026, 3, 3, 11), 3, Month(2025, 12)),
        (utc(2026, 7, 3, 10), 3, Month(2026, 4)),
        # DST edge: 04:30 UTC on March 1st is still February 28th, 23:30 EST, in New York
        (utc(2026, 3, 1, 4, 30), 0, Month(2026, 2)),
        (utc(2026, 3, 1, 4, 30), 3, Month(2025, 11)),
        (utc(2026, 3, 1, 5, 0), 0, Month(2026, 3)),
    ],
)
def test_scheduled_month_is_the_local_month_minus_the_lag(scheduled_start, lag, month):
    assert scheduled_month(scheduled_start, NEW_YORK, lag) == month


def test_scheduled_month_uses_the_time_zone():
    start = utc(2026, 11, 1, 2)
    assert scheduled_month(start, NEW_YORK, 3) == Month(2026, 7)
    assert scheduled_month(start, "Europe/Paris", 3) == Month(2026, 8)
