import uuid
from datetime import UTC, datetime, timedelta

from geo.h3cells import cell_of
from schemas.event import Crs, EventV1, Location, Priority, Source
from streams.correlate.engine import (
    OpenSet,
    Rule,
    correlate,
    correlation_key,
    from_state,
    incident_id_for,
    metres_between,
    to_state,
)
from streams.correlate.state import entry_key, entry_value, fold

T0 = datetime(2026, 9, 14, 8, 0, tzinfo=UTC)  # a typhoon morning
UNDERPASS = (120.6650, 28.0020)  # a flooded underpass in Lucheng
RULE = Rule(radius_m=300, window=timedelta(hours=2))


def report(source=Source.HOTLINE_12345, *, at=T0, lonlat=UNDERPASS, category="waterlogging",
           priority=Priority.NORMAL, needs_triage=False):  # fmt: skip
    lon, lat = lonlat
    return EventV1(
        event_id=uuid.uuid4(),
        source=source,
        external_id=uuid.uuid4().hex,
        occurred_at=at,
        received_at=at,
        location=Location(lon=lon, lat=lat, source_crs=Crs.WGS84, source_lon=lon, source_lat=lat),
        text="地下通道积水",
        category=category,
        priority=priority,
        needs_triage=needs_triage,
        h3_cell=cell_of(lon, lat, 9),
        raw={},
    )


def offset(lonlat, east_m=0.0, north_m=0.0):
    lon, lat = lonlat
    return (lon + east_m / (111_320 * 0.8829), lat + north_m / 110_574)


def test_calls_an_inspection_and_an_alarm_about_one_spot_are_one_incident():
    incidents = OpenSet()
    opening = report()
    first, change = correlate(incidents, opening, RULE)
    assert change == "created" and first.incident_id == incident_id_for(opening.event_id)
    for i in range(11):
        nearby = report(at=T0 + timedelta(minutes=5 * i), lonlat=offset(UNDERPASS, 20 * i, -15 * i))
        assert correlate(incidents, nearby, RULE)[1] == "attached"
    inspection = report(Source.URBAN_INSPECTION, at=T0 + timedelta(minutes=40))
    alarm = report(Source.IOT, at=T0 + timedelta(minutes=41), lonlat=offset(UNDERPASS, 120, 0))
    for event in (inspection, alarm):
        incident, change = correlate(incidents, event, RULE)
        assert (incident.incident_id, change) == (first.incident_id, "attached")
    assert len(incidents) == 1
    assert first.reports == 14 and first.sources == ["hotline-12345", "iot", "urban-inspection"]


def test_two_reports_two_kilometres_apart_are_two_incidents():
    incidents = OpenSet()
    a, _ = correlate(incidents, report(), RULE)
    b, change = correlate(incidents, report(lonlat=offset(UNDERPASS, 2000, 0)), RULE)
    assert change == "created" and a.incident_id != b.incident_id and len(incidents) == 2


def test_the_radius_is_exact_not_the_cell_grid():
    incidents = OpenSet()
    correlate(incidents, report(), RULE)
    assert correlate(incidents, report(lonlat=offset(UNDERPASS, 290, 0)), RULE)[1] == "attached"
    assert correlate(incidents, report(lonlat=offset(UNDERPASS, 0, 900)), RULE)[1] == "created"
    assert 280 < metres_between(*UNDERPASS, *offset(UNDERPASS, 290, 0)) < 300


def test_other_categories_and_late_reports_do_not_merge():
    incidents = OpenSet()
    correlate(incidents, report(), RULE)
    assert correlate(incidents, report(category="garbage"), RULE)[1] == "created"
    late = report(at=T0 + timedelta(hours=3))
    assert correlate(incidents, late, RULE)[1] == "created"


def test_a_replayed_report_is_not_counted_twice():
    incidents = OpenSet()
    event = report()
    correlate(incidents, event, RULE)
    incident, change = correlate(incidents, event, RULE)
    assert change == "duplicate" and incident.reports == 1


def test_uncategorised_or_triage_reports_stay_alone():
    incidents = OpenSet()
    unknown = report(category=None, needs_triage=True)
    assert correlation_key(unknown).startswith(b"alone:")
    assert correlation_key(report()) == b"category:waterlogging"
    _, change = correlate(incidents, unknown, RULE)
    assert change == "created" and len(incidents) == 0


def test_priority_rises_with_reports_and_alarms():
    incidents = OpenSet()
    incident, _ = correlate(incidents, report(), RULE)
    assert incident.priority is Priority.NORMAL
    for i in range(4):
        correlate(incidents, report(at=T0 + timedelta(minutes=i + 1)), RULE)
    assert incident.reports == 5 and incident.priority is Priority.HIGH
    other = OpenSet()
    alarm_incident, _ = correlate(other, report(Source.IOT), RULE)
    assert alarm_incident.priority is Priority.HIGH


def test_state_round_trips_and_expires():
    incidents = OpenSet()
    correlate(incidents, report(), RULE)
    correlate(
        incidents, report(lonlat=offset(UNDERPASS, 2000, 0), at=T0 + timedelta(hours=1)), RULE
    )
    restored = OpenSet(from_state(to_state(list(incidents))))
    assert to_state(list(restored)) == to_state(list(incidents))
    expired = restored.expire(now=T0 + timedelta(hours=2, minutes=30), window=RULE.window)
    assert [i.last_seen for i in expired] == [T0]
    [kept] = list(restored)
    assert kept.reports == 1 and kept.last_seen == T0 + timedelta(hours=1)


def test_an_incident_seen_again_does_not_expire_with_its_first_report():
    """The expiry heap keeps an old entry per report; only the latest one counts."""
    incidents = OpenSet()
    first, _ = correlate(incidents, report(), RULE)
    correlate(incidents, report(at=T0 + timedelta(hours=1, minutes=50)), RULE)
    assert incidents.expire(now=T0 + timedelta(hours=2, minutes=30), window=RULE.window) == []
    assert list(incidents) == [first]
    later = T0 + timedelta(hours=3, minutes=51)
    assert incidents.expire(now=later, window=RULE.window) == [first]
    # Gone from every index: the same spot now opens a new incident; a replay is new too.
    again, change = correlate(incidents, report(at=later), RULE)
    assert change == "created" and again.incident_id != first.incident_id
    assert len(incidents) == 1


def test_many_open_incidents_cost_no_more_per_report():
    """10,000 open incidents across the city: a report near one joins it, by index, not scan."""
    incidents = OpenSet()
    for i in range(10_000):
        spot = offset(UNDERPASS, 1000 * (i % 100), 1000 * (i // 100))
        correlate(incidents, report(lonlat=spot, at=T0 + timedelta(seconds=i)), RULE)
    assert len(incidents) == 10_000
    target = offset(UNDERPASS, 1000 * 42, 1000 * 17)
    joined, change = correlate(incidents, report(lonlat=offset(target, 30, 0)), RULE)
    assert change == "attached" and joined.reports == 2
    assert metres_between(*joined.centre, *target) < 30


def test_a_changelog_folds_to_the_last_value_per_incident_without_the_expired():
    incidents = OpenSet()
    kept, _ = correlate(incidents, report(), RULE)
    gone, _ = correlate(incidents, report(lonlat=offset(UNDERPASS, 5000, 0)), RULE)
    key = b"category:waterlogging"
    first_value = entry_value(kept)
    correlate(incidents, report(at=T0 + timedelta(minutes=5)), RULE)  # kept has 2 reports now
    entries = [
        (entry_key(key, kept), first_value),
        (entry_key(key, gone), entry_value(gone)),
        (entry_key(key, kept), entry_value(kept)),
        (entry_key(key, gone), None),  # expired: a tombstone
    ]
    [restored] = list(fold(entries)[key])
    assert restored.incident_id == kept.incident_id and restored.reports == 2
