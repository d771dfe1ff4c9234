import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from geo.crs import wgs84_to_gcj02
from schemas.event import Priority, Source
from schemas.intake import IntakeEnvelope
from streams.normalize.adapters import UnknownSource, clean_text, normalize


def envelope(payload, source=Source.HOTLINE_12345):
    return IntakeEnvelope(
        event_id=uuid.uuid4(),
        source=source,
        external_id=payload.get("order_no", "x"),
        received_at=datetime.now(UTC),
        payload=payload,
    )


def test_hotline_order_becomes_a_wgs84_event():
    gcj_lon, gcj_lat = wgs84_to_gcj02(120.6994, 27.9938)
    event = normalize(
        envelope(
            {
                "order_no": "WZ-9",
                "call_time": "2026-11-26T09:30:00+08:00",
                "content": "  井盖\u3000\u3000缺失\r\n\r\n\r\n请处理 ",
                "longitude": gcj_lon,
                "latitude": gcj_lat,
                "coord_system": "GCJ02",
                "urgent": True,
            }
        )
    )
    assert event.source is Source.HOTLINE_12345
    assert event.location is not None
    assert abs(event.location.lon - 120.6994) < 1e-7
    assert abs(event.location.lat - 27.9938) < 1e-7
    assert event.location.source_lon == gcj_lon
    assert event.occurred_at == datetime(2026, 11, 26, 1, 30, tzinfo=UTC)
    assert event.text == "井盖 缺失\n请处理"
    assert event.priority is Priority.HIGH


def test_order_without_coordinates_has_no_location():
    event = normalize(
        envelope({"order_no": "WZ-8", "call_time": "2026-11-26T09:30:00", "content": "噪音"})
    )
    assert event.location is None
    assert event.priority is Priority.NORMAL


def test_invalid_payload_raises_a_value_error_naming_the_field():
    with pytest.raises(ValidationError, match="content"):
        normalize(envelope({"order_no": "WZ-7", "call_time": "2026-11-26T09:30:00"}))


def test_source_without_adapter_is_refused():
    with pytest.raises(UnknownSource):
        normalize(envelope({"order_no": "X"}, source=Source.IOT))


def test_clean_text_keeps_single_newlines():
    assert clean_text("a\n b") == "a\n b"


def test_rounds_keep_every_revision_of_an_event_in_order():
    from dispatch.tickets.service import in_rounds

    first = normalize(
        envelope({"order_no": "R-1", "call_time": "2026-11-26T09:30:00", "content": "一"})
    )
    second = first.model_copy(update={"text": "二"})
    other = normalize(
        envelope({"order_no": "R-2", "call_time": "2026-11-26T09:30:00", "content": "三"})
    )
    rounds = in_rounds([first, other, second])
    assert [[e.text for e in r] for r in rounds] == [["一", "三"], ["二"]]
