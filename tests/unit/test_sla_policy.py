"""SLA policies: loading, choosing the most specific one, and the deadlines it gives."""

import csv
import json
from datetime import date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from dispatch.sla.calendar import Duration, RoundTheClock, WorkingCalendar
from dispatch.sla.policy import (
    PRIORITIES,
    CalendarName,
    SlaPolicy,
    deadlines,
    load_calendar,
    load_calendars,
    load_policies,
    policy_for,
)

SH = ZoneInfo("Asia/Shanghai")
WENZHOU = Path(__file__).parents[2] / "packs" / "wenzhou"
HEADER = "category,priority,calendar,accept_within,resolve_within,warn_at,escalate_city_after\n"
FALLBACK = "*,*,working,2h,5d,0.8,1d\n"
CALENDARS = {
    "working": WorkingCalendar([(time(8, 30), time(12)), (time(13, 30), time(17, 30))], SH),
    "24x7": RoundTheClock(SH),
}


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SH)


def policy(category: str, priority: str, calendar: CalendarName = "working") -> SlaPolicy:
    return SlaPolicy(
        category=category,
        priority=priority,
        calendar=calendar,
        accept_within=Duration(2, "h"),
        resolve_within=Duration(5, "d"),
        warn_at=0.8,
        escalate_city_after=Duration(1, "d"),
    )


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sla-policies.csv"
    path.write_text(text, encoding="utf-8")
    return path


# --- choosing a policy ------------------------------------------------------------------------

POLICIES = [
    policy("*", "*"),
    policy("*", "urgent"),
    policy("waterlogging", "*"),
    policy("waterlogging", "high"),
]


@pytest.mark.parametrize(
    ("category", "priority", "chosen"),
    [
        ("waterlogging", "high", ("waterlogging", "high")),  # exact
        ("waterlogging", "urgent", ("waterlogging", "*")),  # category beats priority
        ("waterlogging", "low", ("waterlogging", "*")),
        ("streetlight", "urgent", ("*", "urgent")),
        ("streetlight", "normal", ("*", "*")),
        (None, "urgent", ("*", "urgent")),  # not yet classified
        (None, "low", ("*", "*")),
    ],
)
def test_the_most_specific_policy_wins(category, priority, chosen):
    found = policy_for(POLICIES, category, priority)
    assert (found.category, found.priority) == chosen


def test_no_policy_without_a_fallback():
    with pytest.raises(LookupError, match="streetlight"):
        policy_for([policy("*", "urgent")], "streetlight", "normal")


# --- deadlines --------------------------------------------------------------------------------


def test_deadlines_on_working_days():
    found = deadlines(policy("*", "normal"), at(2026, 3, 2, 10), CALENDARS)
    assert found.accept_due_at == at(2026, 3, 2, 12)
    assert found.accept_warn_at == at(2026, 3, 2, 11, 36)  # 80% of 2h
    assert found.resolve_due_at == at(2026, 3, 9, 17, 30)  # 5 working days after Monday
    assert found.resolve_warn_at == at(2026, 3, 6, 16, 18)  # 80% of 43.5 working hours
    assert found.city_escalation_at == at(2026, 3, 10, 17, 30)  # one more working day


def test_warnings_fall_in_working_time():
    found = deadlines(policy("*", "normal"), at(2026, 3, 2, 17), CALENDARS)
    assert found.accept_due_at == at(2026, 3, 3, 10)
    # 96 working minutes: 30 on Monday evening, 66 on Tuesday morning (not 06:36 at night).
    assert found.accept_warn_at == at(2026, 3, 3, 9, 36)


def test_deadlines_round_the_clock_on_a_holiday_night():
    urgent = SlaPolicy(
        category="*",
        priority="urgent",
        calendar="24x7",
        accept_within=Duration(10, "m"),
        resolve_within=Duration(4, "h"),
        warn_at=0.8,
        escalate_city_after=Duration(2, "h"),
    )
    found = deadlines(urgent, at(2026, 10, 3, 22), CALENDARS)
    assert found.accept_warn_at == at(2026, 10, 3, 22, 8)
    assert found.accept_due_at == at(2026, 10, 3, 22, 10)
    assert found.resolve_warn_at == at(2026, 10, 4, 1, 12)
    assert found.resolve_due_at == at(2026, 10, 4, 2)
    assert found.city_escalation_at == at(2026, 10, 4, 4)


def test_deadlines_need_the_policy_calendar():
    with pytest.raises(KeyError, match="24x7"):
        deadlines(policy("*", "urgent", "24x7"), at(2026, 3, 2, 10), {})


# --- loading policies -------------------------------------------------------------------------


def test_load_policies(tmp_path):
    path = write(tmp_path, HEADER + FALLBACK + "gas-leak, * ,24x7,5m,2h,0.9,1h\n")
    loaded = load_policies(path)
    assert loaded[1] == SlaPolicy(
        category="gas-leak",
        priority="*",
        calendar="24x7",
        accept_within=Duration(5, "m"),
        resolve_within=Duration(2, "h"),
        warn_at=0.9,
        escalate_city_after=Duration(1, "h"),
    )


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("*,urgent,24x7,10 min,4h,0.8,2h\n", r":3: bad duration '10 min'"),
        ("*,urgent,24x7,10m,-4h,0.8,2h\n", r":3: bad duration '-4h'"),
        ("*,*,24x7,10m,4h,0.8,2h\n", r":3: \*,\* is already on line 2"),
        ("*,critical,24x7,10m,4h,0.8,2h\n", r":3: priority 'critical'"),
        ("*,urgent,always,10m,4h,0.8,2h\n", r":3: calendar 'always'"),
        ("*,urgent,24x7,10m,4h,80%,2h\n", r":3: warn_at '80%' is not a number"),
        ("*,urgent,24x7,10m,4h,1.5,2h\n", r":3: warn_at '1.5' must be"),
        ("*,urgent,24x7,10m,4h,0,2h\n", r":3: warn_at '0' must be"),
        (",urgent,24x7,10m,4h,0.8,2h\n", r":3: category is empty"),
        ("*,urgent,24x7,10m,4h,0.8\n", r":3: expected 7 values"),
        ("*,urgent,24x7,10m,4h,0.8,2h,extra\n", r":3: expected 7 values"),
    ],
)
def test_bad_rows_are_refused_with_file_and_line(tmp_path, rows, message):
    path = write(tmp_path, HEADER + FALLBACK + rows)
    with pytest.raises(ValueError, match=message) as refused:
        load_policies(path)
    assert str(refused.value).startswith(str(path))


def test_the_fallback_row_is_required(tmp_path):
    path = write(tmp_path, HEADER + "*,urgent,24x7,10m,4h,0.8,2h\n")
    with pytest.raises(ValueError, match=r"fallback row \*,\* is missing"):
        load_policies(path)


def test_the_header_is_checked(tmp_path):
    path = write(tmp_path, "category,priority,calendar\n" + FALLBACK)
    with pytest.raises(ValueError, match=":1: expected columns"):
        load_policies(path)


# --- loading the calendar ---------------------------------------------------------------------


def write_pack(tmp_path: Path, sla: object, holidays: str = "date,kind,name\n") -> Path:
    (tmp_path / "sla.json").write_text(json.dumps(sla), encoding="utf-8")
    (tmp_path / "holidays.csv").write_text(holidays, encoding="utf-8")
    return tmp_path


SLA_JSON = {"working_hours": ["08:30-12:00", "13:30-17:30"], "timezone": "Asia/Shanghai"}


def test_load_calendar_with_no_holiday_rows(tmp_path):
    calendar = load_calendar(write_pack(tmp_path, SLA_JSON))
    assert calendar.periods == ((time(8, 30), time(12)), (time(13, 30), time(17, 30)))
    assert calendar.tz == SH
    assert calendar.extra_holidays == frozenset()
    assert calendar.extra_workdays == frozenset()


def test_load_calendar_with_pack_dates(tmp_path):
    holidays = "date,kind,name\n2027-01-01,holiday,元旦\n2027-01-09,workday,调休\n"
    calendar = load_calendar(write_pack(tmp_path, SLA_JSON, holidays))
    assert calendar.extra_holidays == {date(2027, 1, 1)}
    assert calendar.extra_workdays == {date(2027, 1, 9)}
    assert calendar.is_workday(date(2027, 1, 9))


@pytest.mark.parametrize(
    ("sla", "holidays", "message"),
    [
        ({**SLA_JSON, "working_hours": ["8:30 to 12:00"]}, "", "is not like"),
        ({**SLA_JSON, "working_hours": ["13:30-17:30", "08:30-12:00"]}, "", "in order"),
        ({**SLA_JSON, "working_hours": "08:30-12:00"}, "", "must be a list"),
        ({**SLA_JSON, "timezone": "Asia/Wenzhou"}, "", "unknown timezone"),
        ({"timezone": "Asia/Shanghai"}, "", "'working_hours' is missing"),
        (SLA_JSON, "2027-01-01,day off,元旦\n", ":2: kind 'day off'"),
        (SLA_JSON, "2027-13-01,holiday,元旦\n", ":2: date '2027-13-01'"),
        (SLA_JSON, "2027-01-01,holiday,元旦\n2027-01-01,workday,x\n", ":3: 2027-01-01 is alr"),
    ],
)
def test_bad_calendar_files_are_refused(tmp_path, sla, holidays, message):
    pack = write_pack(tmp_path, sla, "date,kind,name\n" + holidays)
    with pytest.raises(ValueError, match=message):
        load_calendar(pack)


# --- the Wenzhou pack -------------------------------------------------------------------------


def test_the_wenzhou_calendar_loads():
    calendars = load_calendars(WENZHOU)
    working = calendars["working"]
    assert isinstance(working, WorkingCalendar)
    assert working.periods == ((time(8, 30), time(12)), (time(13, 30), time(17, 30)))
    assert not working.is_workday(date(2027, 1, 1))
    assert isinstance(calendars["24x7"], RoundTheClock)


def test_the_wenzhou_policies_cover_every_category_and_priority():
    policies = load_policies(WENZHOU / "sla-policies.csv")
    with (WENZHOU / "taxonomy.csv").open(encoding="utf-8") as handle:
        categories = {row["code"] for row in csv.DictReader(handle)}
    assert {p.category for p in policies} - {"*"} <= categories
    calendars = load_calendars(WENZHOU)
    start = at(2026, 3, 6, 16)  # Friday afternoon: a working-day clock would lose the weekend
    for category in [*sorted(categories), None]:
        for priority in PRIORITIES:
            found = deadlines(policy_for(policies, category, priority), start, calendars)
            assert found.accept_warn_at <= found.accept_due_at <= found.resolve_due_at
            assert found.resolve_warn_at <= found.resolve_due_at < found.city_escalation_at


@pytest.mark.parametrize("priority", ["urgent", "high"])
def test_wenzhou_category_rows_never_slow_down_urgent_work(priority):
    # category+* beats *+priority, so a slow category row could otherwise catch urgent tickets.
    policies = load_policies(WENZHOU / "sla-policies.csv")
    calendars = load_calendars(WENZHOU)
    start = at(2026, 3, 6, 16)
    generic = deadlines(policy_for(policies, None, priority), start, calendars)
    for category in {p.category for p in policies}:
        chosen = policy_for(policies, category, priority)
        found = deadlines(chosen, start, calendars)
        assert chosen.calendar == "24x7", category
        assert found.accept_due_at <= generic.accept_due_at, category
        assert found.resolve_due_at <= generic.resolve_due_at, category
