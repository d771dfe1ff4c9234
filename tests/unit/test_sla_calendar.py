"""Working-time arithmetic with literal expected datetimes (Asia/Shanghai, 2026 schedule)."""

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatch.sla.calendar import (
    Duration,
    RoundTheClock,
    WorkingCalendar,
    parse_duration,
)

SH = ZoneInfo("Asia/Shanghai")
PERIODS = [(time(8, 30), time(12, 0)), (time(13, 30), time(17, 30))]
CAL = WorkingCalendar(PERIODS, SH, extra_holidays=frozenset({date(2027, 1, 1)}))
CLOCK = RoundTheClock(SH)


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SH)


def mins(n: int) -> Duration:
    return Duration(n, "m")


# --- which days are working days -------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (date(2026, 3, 2), True),  # Monday
        (date(2026, 3, 7), False),  # Saturday
        (date(2026, 10, 1), False),  # National Day
        (date(2026, 10, 7), False),
        (date(2026, 9, 20), True),  # Sunday, 调休
        (date(2026, 10, 10), True),  # Saturday, 调休
        (date(2026, 2, 14), True),  # Saturday before Spring Festival, 调休
        (date(2026, 2, 23), False),  # last day of the Spring Festival break
        (date(2027, 1, 1), False),  # beyond the package: the pack's own holiday
        (date(2027, 1, 4), True),  # beyond the package: Monday to Friday
        (date(2027, 1, 9), False),
        (date(2003, 6, 2), True),  # before the package's range, Monday
    ],
)
def test_is_workday(day, working):
    assert CAL.is_workday(day) is working


def test_pack_dates_win_over_the_package():
    cal = WorkingCalendar(
        PERIODS,
        SH,
        extra_holidays=frozenset({date(2026, 3, 4)}),
        extra_workdays=frozenset({date(2026, 3, 7)}),
    )
    assert not cal.is_workday(date(2026, 3, 4))
    assert cal.is_workday(date(2026, 3, 7))


def test_without_the_pack_holiday_2027_new_year_falls_back_to_a_weekday():
    assert WorkingCalendar(PERIODS, SH).is_workday(date(2027, 1, 1))


# --- minutes and hours ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "duration", "due"),
    [
        (at(2026, 3, 2, 9), Duration(2, "h"), at(2026, 3, 2, 11)),  # inside the morning
        (at(2026, 3, 2, 8, 30), mins(210), at(2026, 3, 2, 12)),  # uses the morning exactly
        (at(2026, 3, 2, 9), Duration(4, "h"), at(2026, 3, 2, 14, 30)),  # over lunch
        (at(2026, 3, 2, 12, 30), mins(30), at(2026, 3, 2, 14)),  # reported at lunch
        (at(2026, 3, 2, 7), mins(30), at(2026, 3, 2, 9)),  # before opening
        (at(2026, 3, 2, 18), Duration(1, "h"), at(2026, 3, 3, 9, 30)),  # evening
        (at(2026, 3, 2, 23), mins(10), at(2026, 3, 3, 8, 40)),  # night
        (at(2026, 3, 2, 16), Duration(8, "h"), at(2026, 3, 3, 16, 30)),  # over a night
        (at(2026, 3, 6, 17), Duration(1, "h"), at(2026, 3, 9, 9)),  # over a weekend
        (at(2026, 3, 7, 10), mins(10), at(2026, 3, 9, 8, 40)),  # reported on Saturday
    ],
)
def test_add_working_time_on_ordinary_days(start, duration, due):
    assert CAL.add(start, duration) == due


@pytest.mark.parametrize(
    ("start", "duration", "due"),
    [
        # National Day 2026: Oct 1-7 off, Sunday Sep 20 and Saturday Oct 10 worked.
        (at(2026, 9, 30, 17), Duration(2, "h"), at(2026, 10, 8, 10)),
        (at(2026, 10, 3, 14), Duration(2, "h"), at(2026, 10, 8, 10, 30)),
        (at(2026, 9, 19, 10), Duration(1, "h"), at(2026, 9, 20, 9, 30)),
        (at(2026, 10, 9, 17), Duration(1, "h"), at(2026, 10, 10, 9)),
        # Spring Festival 2026: Saturday Feb 14 worked, Feb 15-23 off.
        (at(2026, 2, 13, 17), Duration(1, "h"), at(2026, 2, 14, 9)),
        (at(2026, 2, 14, 17), Duration(1, "h"), at(2026, 2, 24, 9)),
        # 2027 is beyond the package: the pack's 2027-01-01, then Saturday and Sunday.
        (at(2026, 12, 31, 17), Duration(1, "h"), at(2027, 1, 4, 9)),
    ],
)
def test_add_working_time_over_holidays(start, duration, due):
    assert CAL.add(start, duration) == due


@pytest.mark.parametrize(
    ("start", "days", "due"),
    [
        (at(2026, 3, 5, 10), 1, at(2026, 3, 6, 17, 30)),  # Thursday: the next working day
        (at(2026, 3, 5, 7), 1, at(2026, 3, 6, 17, 30)),  # before opening: still not counted
        (at(2026, 3, 5, 20), 1, at(2026, 3, 6, 17, 30)),
        (at(2026, 3, 6, 10), 1, at(2026, 3, 9, 17, 30)),  # Friday: Monday
        (at(2026, 3, 7, 10), 1, at(2026, 3, 9, 17, 30)),  # Saturday: Monday
        (at(2026, 3, 2, 10), 5, at(2026, 3, 9, 17, 30)),
        (at(2026, 9, 30, 10), 3, at(2026, 10, 10, 17, 30)),  # Oct 8, 9 and Saturday 10
        (at(2026, 10, 2, 10), 1, at(2026, 10, 8, 17, 30)),  # reported on a holiday
        (at(2026, 2, 13, 10), 2, at(2026, 2, 24, 17, 30)),  # Feb 14 (Saturday), Feb 24
        (at(2026, 12, 30, 10), 2, at(2027, 1, 4, 17, 30)),  # Dec 31, then into 2027
    ],
)
def test_add_working_days(start, days, due):
    assert CAL.add(start, Duration(days, "d")) == due


@pytest.mark.parametrize("unit", ["m", "h", "d"])
def test_zero_duration_is_the_start(unit):
    start = at(2026, 10, 3, 3, 17)  # a holiday night: not moved to working time
    assert CAL.add(start, Duration(0, unit)) == start
    assert CLOCK.add(start, Duration(0, unit)) == start


def test_start_in_another_zone_gives_a_due_in_the_calendar_zone():
    due = CAL.add(datetime(2026, 3, 2, 1, 0, tzinfo=UTC), Duration(1, "h"))  # 09:00 in Wenzhou
    assert due == at(2026, 3, 2, 10)
    assert due.tzinfo is SH
    assert due.isoformat() == "2026-03-02T10:00:00+08:00"


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        CAL.add(datetime(2026, 3, 2, 9), Duration(1, "h"))
    with pytest.raises(ValueError, match="timezone-aware"):
        CLOCK.working_time_between(at(2026, 3, 2), datetime(2026, 3, 3))


# --- working time between two instants, and pauses -------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "working"),
    [
        (at(2026, 3, 2, 9), at(2026, 3, 2, 14), timedelta(hours=3, minutes=30)),
        (at(2026, 3, 2, 12, 10), at(2026, 3, 2, 13, 20), timedelta(0)),  # lunch
        (at(2026, 3, 6, 17), at(2026, 3, 9, 9), timedelta(hours=1)),  # over a weekend
        (at(2026, 9, 30, 17), at(2026, 10, 8, 10), timedelta(hours=2)),  # National Day
        (at(2026, 3, 2, 0), at(2026, 3, 3, 0), timedelta(hours=7, minutes=30)),  # a whole day
        (at(2026, 3, 2, 14), at(2026, 3, 2, 9), timedelta(0)),  # reversed
        (at(2026, 3, 2, 9), at(2026, 3, 2, 9), timedelta(0)),
    ],
)
def test_working_time_between(a, b, working):
    assert CAL.working_time_between(a, b) == working


def test_working_time_between_instants_in_different_zones():
    a = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # 09:00 in Wenzhou
    assert CAL.working_time_between(a, at(2026, 3, 2, 10)) == timedelta(hours=1)


def test_a_pause_extends_the_due_time_by_the_working_time_paused():
    due = at(2026, 3, 2, 16)
    paused = CAL.working_time_between(at(2026, 3, 2, 15), at(2026, 3, 3, 10))
    assert paused == timedelta(hours=4)  # 2.5h on Monday, 1.5h on Tuesday
    assert CAL.extend(due, paused) == at(2026, 3, 3, 11)


def test_a_pause_over_the_holidays_costs_only_working_time():
    paused = CAL.working_time_between(at(2026, 9, 30, 17), at(2026, 10, 8, 8, 30))
    assert paused == timedelta(minutes=30)
    assert CAL.extend(at(2026, 10, 8, 17, 10), paused) == at(2026, 10, 9, 8, 40)


def test_extend_refuses_negative_time():
    with pytest.raises(ValueError, match="negative"):
        CAL.extend(at(2026, 3, 2, 9), timedelta(minutes=-1))
    with pytest.raises(ValueError, match="negative"):
        CLOCK.extend(at(2026, 3, 2, 9), timedelta(minutes=-1))


# --- round the clock --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "duration", "due"),
    [
        (at(2026, 10, 3, 23, 50), mins(10), at(2026, 10, 4, 0, 0)),  # holiday midnight
        (at(2026, 10, 3, 22), Duration(4, "h"), at(2026, 10, 4, 2)),
        (at(2026, 3, 6, 12), Duration(2, "d"), at(2026, 3, 8, 12)),  # 48 hours, a weekend
    ],
)
def test_round_the_clock_add(start, duration, due):
    assert CLOCK.add(start, duration) == due


def test_round_the_clock_time_between_and_extend():
    assert CLOCK.is_workday(date(2026, 10, 1))
    assert CLOCK.working_time_between(at(2026, 10, 1, 22), at(2026, 10, 2, 1)) == timedelta(hours=3)
    assert CLOCK.working_time_between(at(2026, 10, 2), at(2026, 10, 1)) == timedelta(0)
    assert CLOCK.extend(at(2026, 10, 1, 22), timedelta(hours=3)) == at(2026, 10, 2, 1)
    assert CLOCK.add(datetime(2026, 3, 2, tzinfo=UTC), mins(1)).tzinfo is SH


def test_round_the_clock_without_a_zone_keeps_the_start_zone():
    due = RoundTheClock().add(datetime(2026, 3, 2, 23, tzinfo=UTC), Duration(2, "h"))
    assert due == datetime(2026, 3, 3, 1, tzinfo=UTC)
    assert due.tzinfo is UTC


# --- properties -------------------------------------------------------------------------------

starts = st.datetimes(
    min_value=datetime(2025, 12, 1), max_value=datetime(2027, 2, 1), timezones=st.just(SH)
)


@given(start=starts, minutes=st.integers(min_value=0, max_value=60 * 7 * 40))
def test_working_time_to_the_due_time_is_the_duration(start, minutes):
    due = CAL.add(start, mins(minutes))
    assert CAL.working_time_between(start, due) == timedelta(minutes=minutes)
    assert CAL.extend(start, timedelta(minutes=minutes)) == due


@given(start=starts, minutes=st.integers(min_value=1, max_value=60 * 7 * 40))
def test_due_times_fall_in_working_time(start, minutes):
    due = CAL.add(start, mins(minutes))
    local = due.astimezone(SH)
    assert CAL.is_workday(local.date())
    assert any(opens < local.time() <= closes for opens, closes in PERIODS)


@given(start=starts, days=st.integers(min_value=1, max_value=30))
def test_day_due_times_are_at_closing_after_the_start_day(start, days):
    due = CAL.add(start, Duration(days, "d"))
    assert due.time() == time(17, 30)
    assert due.date() > start.date()
    assert CAL.is_workday(due.date())


# --- durations --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "duration"),
    [
        ("30m", Duration(30, "m")),
        ("4h", Duration(4, "h")),
        ("5d", Duration(5, "d")),
        ("0m", Duration(0, "m")),
        (" 10m ", Duration(10, "m")),
    ],
)
def test_parse_duration(text, duration):
    assert parse_duration(text) == duration
    assert str(duration) == text.strip()


@pytest.mark.parametrize(
    "text", ["", "m", "30", "-5m", "+5m", "1.5h", "5s", "5 m", "05m", "5M", "4h30m", "五天"]
)
def test_parse_duration_refuses(text):
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(text)


def test_duration_refuses_negative_amounts():
    with pytest.raises(ValueError, match="negative"):
        Duration(-1, "m")


def test_day_durations_have_no_fixed_length():
    assert Duration(90, "m").as_timedelta() == timedelta(minutes=90)
    with pytest.raises(ValueError, match="days"):
        Duration(1, "d").as_timedelta()


# --- construction -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("periods", "message"),
    [
        ([], "at least one"),
        ([(time(12), time(8, 30))], "does not end after"),
        ([(time(8, 30), time(12)), (time(11), time(17))], "overlap"),
        ([(time(13, 30), time(17, 30)), (time(8, 30), time(12))], "in order"),
    ],
)
def test_bad_periods_are_refused(periods, message):
    with pytest.raises(ValueError, match=message):
        WorkingCalendar(periods, SH)


def test_a_date_cannot_be_both_holiday_and_workday():
    day = frozenset({date(2027, 1, 1)})
    with pytest.raises(ValueError, match="2027-01-01"):
        WorkingCalendar(PERIODS, SH, extra_holidays=day, extra_workdays=day)
