"""The rules stage's no-data deadlines: one heap entry per device, however often it reports."""

from streams.iot.agents import NO_DATA, DeviceEntry, RulesState
from streams.iot.rules import AlarmState


def entry_at(last_ts_ms: int, timeout_s: float = 600) -> DeviceEntry:
    return DeviceEntry("smoke", timeout_s, {NO_DATA: AlarmState(last_ts_ms=last_ts_ms)})


def test_a_device_reporting_often_keeps_one_deadline_in_the_heap() -> None:
    state = RulesState(bootstrap="unused", changelog="unused")
    for second in range(1000):
        state.arm(0, b"device", entry_at(second * 1000))
    assert state.deadlines[0] == [(600_000, b"device")]  # the first; re-armed when it comes due
    assert state.armed[0] == {b"device": 600_000}


def test_a_shorter_timeout_arms_an_earlier_deadline() -> None:
    state = RulesState(bootstrap="unused", changelog="unused")
    state.arm(0, b"device", entry_at(0, timeout_s=600))
    state.arm(0, b"device", entry_at(1000, timeout_s=60))
    assert state.armed[0] == {b"device": 61_000}
    assert min(state.deadlines[0]) == (61_000, b"device")  # the older entry is skipped when due


def test_a_device_already_silent_is_not_armed_again() -> None:
    state = RulesState(bootstrap="unused", changelog="unused")
    silent = DeviceEntry("smoke", 600, {NO_DATA: AlarmState(active="major", last_ts_ms=0)})
    state.arm(0, b"device", silent)
    assert not state.deadlines.get(0)
