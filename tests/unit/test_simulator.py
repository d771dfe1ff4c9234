import random
from collections import Counter

from geo.jurisdiction import DistrictIndex
from hub.pack import load_pack
from hub.settings import get_settings
from iot_ingest.simulator import LOW_LYING, Scenario, SimDevice, due, place_devices, reading
from streams.iot.rules import evaluate
from tests.unit.helpers import pack_rule_sets

SETTINGS = get_settings()
RULE_SETS = pack_rule_sets()
INDEX = DistrictIndex.from_geojson(SETTINGS.pack_dir / "districts.geojson")


def district_of(lon: float, lat: float) -> str | None:
    district = INDEX.district_of(lon, lat)
    return district.code if district else None


def test_devices_are_placed_in_districts_with_the_mix():
    devices = place_devices(2000, seed=3, bbox=load_pack(SETTINGS.pack_dir).bbox,
                            district_of=district_of)  # fmt: skip
    assert len(devices) == 2000 and len({d.serial for d in devices}) == 2000
    assert all(district_of(d.lon, d.lat) == d.district for d in devices)
    shares = Counter(d.profile for d in devices)
    assert 500 < shares["smoke"] < 700 and set(shares) <= set(RULE_SETS)
    assert len({d.district for d in devices}) == 12  # all of Wenzhou


def test_each_device_reports_once_per_interval():
    devices = [SimDevice(f"S{i}", "smoke", 120.6, 28.0, "330302") for i in range(25)]
    seen = Counter(d.serial for tick in range(10) for d in due(devices, tick, 10))
    assert set(seen.values()) == {1} and len(seen) == 25


def level_alarm(values: list[float]) -> str | None:
    rule, state = RULE_SETS["water-level"][0], None
    for second, value in enumerate(values):
        state, _ = evaluate(rule, state, 1_000_000 + second * 60_000, value)
    return state.active


def test_calm_water_stays_quiet_and_a_typhoon_floods_low_lying_districts():
    rng = random.Random(1)
    gauge = SimDevice("W1", "water-level", 120.66, 28.01, "330302")
    calm = Scenario("calm", started_at=0)
    storm = Scenario("typhoon", started_at=0)
    assert level_alarm([reading(gauge, 60.0 * m, calm, rng)["water_level_m"]
                        for m in range(30)]) is None  # fmt: skip
    levels = [reading(gauge, 60.0 * m, storm, rng)["water_level_m"] for m in range(30)]
    assert levels[-1] > 5.0 and level_alarm(levels) == "critical"
    upland = SimDevice("W2", "water-level", 119.9, 27.6, "330329")
    assert "330329" not in LOW_LYING
    assert reading(upland, 3600, storm, rng)["water_level_m"] < 4.0


def test_a_fire_sets_off_nearby_smoke_detectors_and_offline_silences_a_district():
    rng = random.Random(1)
    fire = Scenario("fire", started_at=0, lon=120.6555, lat=28.0167)
    near = SimDevice("S1", "smoke", 120.6570, 28.0170, "330302")
    far = SimDevice("S2", "smoke", 120.70, 28.03, "330302")
    assert reading(near, 10, fire, rng)["smoke_alarm"] == 1
    assert reading(far, 10, fire, rng)["smoke_alarm"] == 0
    dark = Scenario("offline", district="330302")
    assert reading(near, 10, dark, rng) is None
    assert reading(SimDevice("S3", "smoke", 120.8, 27.9, "330303"), 10, dark, rng) is not None


def test_half_an_hour_of_calm_raises_no_alarm_on_any_profile():
    """The simulator's calm is quiet under the real profiles (10 s readings): a typhoon's
    alarms in the demo are the scenario's, not noise."""
    rng = random.Random(5)
    calm = Scenario("calm")
    for profile, rules in RULE_SETS.items():
        device = SimDevice("X", profile, 120.66, 28.01, "330302")
        states: dict = {}
        for step in range(180):
            values = reading(device, 10.0 * step, calm, rng)
            for rule in rules:
                if rule.key in values:
                    states[rule.alarm_type], changes = evaluate(
                        rule, states.get(rule.alarm_type), 1_000_000 + step * 10_000,
                        float(values[rule.key]),
                    )  # fmt: skip
                    assert not changes, (profile, step, changes)


def test_a_typhoon_tilts_a_few_weak_buildings_not_every_one():
    rng = random.Random(2)
    storm = Scenario("typhoon", started_at=0)
    buildings = [SimDevice(f"B{i}", "building-tilt", 120.66, 28.01, "330302") for i in range(1000)]
    moved = [b for b in buildings if reading(b, 3600, storm, rng)["tilt_deg"] > 0.3]
    assert 5 <= len(moved) <= 50  # about one in 50
