import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from schemas.codec import dumps, loads
from schemas.event import EventV1, Source, event_id_for
from schemas.intake import Hotline12345Order


def order(**overrides):
    base = {"order_no": "WZ-1", "call_time": "2026-11-26T09:30:00", "content": "路灯不亮"}
    return {**base, **overrides}


def test_event_id_is_stable_per_source_and_external_id():
    assert event_id_for("hotline-12345", "A1") == event_id_for("hotline-12345", "A1")
    assert event_id_for("hotline-12345", "A1") != event_id_for("emergency-120", "A1")
    assert event_id_for("hotline-12345", "A1") != event_id_for("hotline-12345", "A2")


def test_naive_call_time_is_china_time():
    parsed = Hotline12345Order.model_validate(order())
    assert parsed.call_time.utcoffset().total_seconds() == 8 * 3600
    assert parsed.call_time.astimezone(UTC).hour == 1


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"order_no": "有空格 1"}, "order_no"),
        ({"content": ""}, "content"),
        ({"latitude": 28.0}, "longitude and latitude"),
        ({"longitude": 200.0, "latitude": 28.0}, "longitude"),
        ({"request_type": "闲聊"}, "request_type"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
def test_bad_orders_name_the_field(overrides, field):
    with pytest.raises(ValidationError) as info:
        Hotline12345Order.model_validate(order(**overrides))
    assert field in str(info.value)


def test_event_round_trips_through_the_wire_format():
    event = EventV1(
        event_id=uuid.uuid4(),
        source=Source.HOTLINE_12345,
        external_id="WZ-1",
        occurred_at=datetime(2026, 11, 26, 1, 30, tzinfo=UTC),
        received_at=datetime.now(UTC),
        location=None,
        text="路灯不亮",
        raw={"order_no": "WZ-1"},
    )
    assert loads(EventV1, dumps(event)) == event


def test_event_refuses_naive_times():
    with pytest.raises(ValidationError, match="occurred_at"):
        EventV1(
            event_id=uuid.uuid4(),
            source=Source.HOTLINE_12345,
            external_id="WZ-1",
            occurred_at=datetime(2026, 11, 26, 1, 30),
            received_at=datetime.now(UTC),
            location=None,
            text="x",
            raw={},
        )
