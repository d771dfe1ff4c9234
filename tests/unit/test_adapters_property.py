"""Property tests for the civic-source adapters (streams/normalize/adapters.py): the four
civic sources and Open311.

Payloads are generated from the pydantic models' own constraints (id patterns, text lengths,
numeric bounds), so a constraint that changes changes what is generated.
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from geo.crs import gcj02_to_bd09, wgs84_to_gcj02
from hub.pack import load_pack
from hub.settings import get_settings
from schemas.codec import dumps, loads
from schemas.event import Crs, EventV1, Priority, Source, event_id_for
from schemas.intake import (
    CHINA_TZ,
    CIVIC_SOURCES,
    DispatchLevel,
    Emergency120Record,
    GridGovernanceEvent,
    Hotline12345Order,
    HotlineRequestType,
    IntakeEnvelope,
    Open311Request,
    UrbanInspectionCase,
)
from streams.normalize.adapters import ADAPTERS, clean_text, normalize

PROPERTY = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PACK = load_pack(get_settings().pack_dir)
WEST, SOUTH, EAST, NORTH = PACK.bbox
# GCJ-02 shifts Wenzhou by about 0.005 degrees, BD-09 by about 0.012: generate WGS-84 points
# this far inside the box so the point as the source reports it is inside the box as well.
MARGIN = 0.02
# How far a reported point may move when converted to WGS-84 (BD-09 moves it most).
MAX_SHIFT_DEG = 0.015


@cache
def _properties(model: type[BaseModel]) -> dict[str, Any]:
    properties: dict[str, Any] = model.model_json_schema()["properties"]
    return properties


def _constraint(model: type[BaseModel], field: str, name: str) -> Any:
    """One constraint (pattern, maxLength, minimum …) of a model field, from its JSON schema
    (an optional field's constraint is in the non-null branch of its ``anyOf``)."""
    schema = _properties(model)[field]
    for branch in (schema, *schema.get("anyOf", ())):
        if name in branch:
            return branch[name]
    raise LookupError(f"{model.__name__}.{field} has no {name} constraint")


def _ids(model: type[BaseModel], field: str) -> st.SearchStrategy[str]:
    pattern = _constraint(model, field, "pattern")
    max_length = _constraint(model, field, "maxLength")
    return st.from_regex(pattern, fullmatch=True).filter(lambda s: len(s) <= max_length)


# Text as sources send it: Chinese, ASCII, control characters (C0 and C1; NUL is refused by the
# models, see below), full-width spaces, CR/LF, tabs.
CJK = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)
ASCII = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
CONTROLS = st.sampled_from([chr(c) for c in (*range(0x01, 0x20), *range(0x7F, 0xA0))])
SPACING = st.sampled_from(["\u3000", " ", "\t", "\r", "\n", "，", "。"])
TEXT_CHARS = st.one_of(CJK, ASCII, CONTROLS, SPACING)


def _texts(max_length: int) -> st.SearchStrategy[str]:
    """1..max_length characters with at least one visible one (stripping must not empty it)."""
    short = st.builds(
        lambda before, visible, after: (before + visible + after)[:max_length],
        st.text(TEXT_CHARS, max_size=min(200, max_length // 2)),
        CJK | st.characters(min_codepoint=0x21, max_codepoint=0x7E),
        st.text(TEXT_CHARS, max_size=min(200, max_length // 2)),
    )
    # Near and at the limit too: a unit repeated, starting with a visible character.
    long = st.builds(
        lambda length, unit: (("井" + unit) * (length // (len(unit) + 1) + 1))[:length],
        st.integers(max(1, max_length - 10), max_length),
        st.text(TEXT_CHARS, min_size=1, max_size=8),
    )
    return st.one_of(short, short, short, long)


def _text_field(model: type[BaseModel], field: str) -> st.SearchStrategy[str]:
    return _texts(_constraint(model, field, "maxLength"))


def _offsets() -> st.SearchStrategy[timezone]:
    return st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(
        lambda minutes: timezone(timedelta(minutes=minutes))
    )


TIMES = st.datetimes(
    min_value=datetime(1971, 1, 1),
    max_value=datetime(2100, 12, 31),
    timezones=st.one_of(st.none(), st.just(UTC), _offsets()),
)


def _as_sent(moment: datetime, zulu: bool) -> str:
    text = moment.isoformat()
    return text.replace("+00:00", "Z") if zulu else text


def _instant(moment: datetime) -> datetime:
    """What the moment means: a naive time is China Standard Time (UTC+8)."""
    return moment.replace(tzinfo=CHINA_TZ) if moment.tzinfo is None else moment


FORWARD: dict[Crs, Callable[[float, float], tuple[float, float]]] = {
    Crs.WGS84: lambda lon, lat: (lon, lat),
    Crs.GCJ02: wgs84_to_gcj02,
    Crs.BD09: lambda lon, lat: gcj02_to_bd09(*wgs84_to_gcj02(lon, lat)),
}


@st.composite
def _located(draw: st.DrawFn, model: type[BaseModel]) -> dict[str, Any]:
    """Location fields: none, or a point in Wenzhou in a declared (or the default) system."""
    if draw(st.integers(0, 4)) == 0:  # one in five has no coordinates
        return {}
    wgs_lon = draw(st.floats(WEST + MARGIN, EAST - MARGIN))
    wgs_lat = draw(st.floats(SOUTH + MARGIN, NORTH - MARGIN))
    declared = draw(st.sampled_from([None, *Crs]))
    crs = declared or model.model_fields["coord_system"].default
    lon, lat = FORWARD[crs](wgs_lon, wgs_lat)
    fields: dict[str, Any] = {"longitude": lon, "latitude": lat}
    if declared is not None:
        fields["coord_system"] = declared.value
    return {**fields, "_wgs": (wgs_lon, wgs_lat), "_crs": crs}


_MISSING = object()  # the field is left out


def _optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(_MISSING), st.none(), strategy)


PHONES = st.from_regex(r"(\+86)?1[3-9][0-9]{9}", fullmatch=True)


@st.composite
def _payloads(draw: st.DrawFn, source: Source) -> tuple[dict[str, Any], dict[str, Any]]:
    """(payload, expectations) for one valid record of ``source``."""
    spec = CIVIC_SOURCES[source]
    model = spec.model
    moment = draw(TIMES)
    zulu = draw(st.booleans())
    location = draw(_located(model))
    wgs, crs = location.pop("_wgs", None), location.pop("_crs", None)
    fields: dict[str, Any] = {
        spec.external_id_field: draw(_ids(model, spec.external_id_field)),
        spec.time_field: _as_sent(moment, zulu),
        **location,
        "address": draw(_optional(_text_field(model, "address"))),
    }
    expect: dict[str, Any] = {"instant": _instant(moment), "wgs": wgs, "crs": crs}
    if model is Hotline12345Order:
        urgent = draw(st.booleans())
        request_type = draw(st.sampled_from(list(HotlineRequestType)))
        fields |= {
            "content": draw(_text_field(model, "content")),
            "request_type": request_type.value,
            "caller_phone": draw(_optional(PHONES)),
            "urgent": urgent,
        }
        expect |= {
            "text_field": "content",
            "priority": Priority.HIGH if urgent else Priority.NORMAL,
            "source_category": request_type.value,
        }
    elif model is Emergency120Record:
        level = draw(st.sampled_from(list(DispatchLevel)))
        patients = draw(
            st.integers(
                _constraint(model, "patients", "minimum"), _constraint(model, "patients", "maximum")
            )
        )
        fields |= {
            "chief_complaint": draw(_text_field(model, "chief_complaint")),
            "patients": patients,
            "dispatch_level": int(level),
            "caller_phone": draw(_optional(PHONES)),
        }
        if level <= DispatchLevel.SEVERE or patients >= 3:
            priority = Priority.URGENT
        elif level == DispatchLevel.URGENT:
            priority = Priority.HIGH
        else:
            priority = Priority.NORMAL
        expect |= {
            "text_field": "chief_complaint",
            "priority": priority,
            "source_category": f"level-{int(level)}",
        }
    elif model is UrbanInspectionCase:
        kind = draw(st.sampled_from(["component", "event"]))
        code = draw(st.from_regex(_constraint(model, "code", "pattern"), fullmatch=True))
        photos = st.builds(
            "https://img.example.org/{}/{}.jpg".format,
            st.from_regex(r"[a-z0-9]{1,12}", fullmatch=True),
            st.uuids().map(str),
        )
        fields |= {
            "kind": kind,
            "code": code,
            "description": draw(_text_field(model, "description")),
            "photo_urls": draw(
                st.lists(photos, max_size=_constraint(model, "photo_urls", "maxItems"))
            ),
            "inspector_id": draw(_ids(model, "inspector_id")),
        }
        expect |= {
            "text_field": "description",
            "priority": Priority.NORMAL,
            "source_category": f"{kind}:{code}",
        }
    else:
        assert model is GridGovernanceEvent
        event_type = draw(
            st.text(
                CJK | st.characters(min_codepoint=0x21, max_codepoint=0x7E),
                min_size=1,
                max_size=_constraint(model, "event_type", "maxLength"),
            )
        )
        grid_pattern = _constraint(model, "grid_id", "pattern")
        fields |= {
            "grid_id": draw(
                st.from_regex(grid_pattern, fullmatch=True).filter(lambda s: len(s) <= 64)
            ),
            "event_type": event_type,
            "description": draw(_text_field(model, "description")),
            "worker_id": draw(_ids(model, "worker_id")),
        }
        expect |= {
            "text_field": "description",
            "priority": Priority.NORMAL,
            "source_category": event_type,
        }
    payload = {key: value for key, value in fields.items() if value is not _MISSING}
    return payload, expect


def _envelope(source: Source, payload: dict[str, Any], external_id: str) -> IntakeEnvelope:
    return IntakeEnvelope(
        event_id=event_id_for(source, external_id),
        source=source,
        external_id=external_id,
        received_at=datetime.now(UTC),
        payload_hash="0" * 64,
        payload=payload,
    )


CIVIC = sorted((s for s in ADAPTERS if s is not Source.OPEN311), key=str)


def test_every_civic_source_has_an_adapter_and_a_spec():
    assert set(CIVIC) == set(CIVIC_SOURCES)


def test_every_adapter_is_tested_here():
    assert set(ADAPTERS) == {*CIVIC, Source.OPEN311}


def _check_text(text: str, original: str) -> None:
    assert len(text) <= len(original)
    for char in text:
        assert char == "\n" or unicodedata.category(char) != "Cc", f"control {char!r} kept"
    assert text == text.strip()
    assert "\r" not in text and "\t" not in text and "\u3000" not in text
    assert "  " not in text  # runs of spaces collapsed
    assert "\n\n" not in text  # blank lines collapsed


@pytest.mark.parametrize("source", CIVIC, ids=str)
@PROPERTY
@given(data=st.data())
def test_a_valid_payload_normalises_to_a_faithful_event(source: Source, data: st.DataObject):
    payload, expect = data.draw(_payloads(source))
    spec = CIVIC_SOURCES[source]
    external_id = payload[spec.external_id_field]
    envelope = _envelope(source, payload, external_id)

    event = normalize(envelope)

    assert isinstance(event, EventV1)
    assert event.source is source
    assert event.event_id == envelope.event_id
    assert event.external_id == external_id
    assert event.received_at == envelope.received_at
    assert event.occurred_at.utcoffset() is not None
    assert event.occurred_at == expect["instant"]
    assert event.raw == payload

    if expect["wgs"] is None:
        assert event.location is None
    else:
        location = event.location
        assert location is not None
        assert location.source_crs is expect["crs"]
        assert (location.source_lon, location.source_lat) == (
            payload["longitude"],
            payload["latitude"],
        )
        assert WEST <= payload["longitude"] <= EAST and SOUTH <= payload["latitude"] <= NORTH
        assert abs(location.lon - payload["longitude"]) < MAX_SHIFT_DEG
        assert abs(location.lat - payload["latitude"]) < MAX_SHIFT_DEG
        # … and it is the WGS-84 point the reported one was made from (BD-09 to ~1e-6).
        assert abs(location.lon - expect["wgs"][0]) < 1e-5
        assert abs(location.lat - expect["wgs"][1]) < 1e-5
        if expect["crs"] is Crs.WGS84:
            assert (location.lon, location.lat) == expect["wgs"]
        else:
            assert (location.lon, location.lat) != (payload["longitude"], payload["latitude"])

    _check_text(event.text, payload[expect["text_field"]])
    assert isinstance(event.priority, Priority)
    assert event.priority is expect["priority"]
    assert event.source_category == expect["source_category"]
    # Categories come later, from the pack (streams/enrich): adapters never guess one.
    assert event.category is None
    # What the stream sends on events.enriched reads back as the same event.
    assert loads(EventV1, dumps(event)) == event


# Keys a payload of any source may have, plus made-up ones; values are JSON scalars.
FIELD_NAMES = sorted({name for spec in CIVIC_SOURCES.values() for name in spec.model.model_fields})
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    # Ints too large for a float are covered by their own test below.
    st.integers(-(2**64), 2**64),
    st.floats(),
    st.text(max_size=30),
    st.sampled_from(["2026-05-01T08:00:00", "2026-05-01T08:00:00+08:00", "GCJ02", "BD09", "1"]),
)
KEYS = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=12))


@st.composite
def _mutated(draw: st.DrawFn, source: Source) -> dict[str, Any]:
    """A valid payload with some fields removed and others replaced by arbitrary scalars."""
    payload, _ = draw(_payloads(source))
    removed = draw(st.sets(st.sampled_from(sorted(payload)), max_size=3))
    replaced = draw(st.dictionaries(KEYS, SCALARS, max_size=4))
    return {k: v for k, v in payload.items() if k not in removed} | replaced


@pytest.mark.parametrize("source", CIVIC, ids=str)
@PROPERTY
@given(data=st.data())
def test_any_json_ish_payload_normalises_or_raises_value_error(source: Source, data: st.DataObject):
    payload = data.draw(
        st.one_of(st.dictionaries(KEYS, SCALARS, max_size=12), _mutated(source)),
        label="payload",
    )
    envelope = _envelope(source, payload, f"P-{uuid.uuid4().hex[:8]}")
    try:
        event = normalize(envelope)
    except ValueError:  # pydantic's ValidationError is one
        return
    assert isinstance(event, EventV1)


@pytest.mark.parametrize("control", ["\x85", "\x9b"], ids=["NEL", "CSI"])
def test_c1_control_characters_are_dropped_too(control: str):
    payload = {
        "order_no": "WZ-C1",
        "call_time": "2026-05-01T08:00:00",
        "content": f"井盖{control}缺失{control}[31m",
    }
    event = normalize(_envelope(Source.HOTLINE_12345, payload, "WZ-C1"))
    assert event.text == "井盖缺失[31m"


@pytest.mark.parametrize("source", CIVIC, ids=str)
@PROPERTY
@given(data=st.data())
def test_a_nul_character_in_any_text_is_refused_naming_the_field(
    source: Source, data: st.DataObject
):
    """PostgreSQL cannot store U+0000 in text or jsonb: the models refuse it."""
    payload, expect = data.draw(_payloads(source))
    text_fields = [expect["text_field"], *(["address"] if payload.get("address") else [])]
    field = data.draw(st.sampled_from(text_fields), label="field")
    cut = data.draw(st.integers(0, len(payload[field])), label="cut")
    payload[field] = (payload[field][:cut] + "\x00" + payload[field][cut:])[:4000]
    if "\x00" not in payload[field]:
        payload[field] = "\x00" + payload[field][1:]
    envelope = _envelope(source, payload, payload[CIVIC_SOURCES[source].external_id_field])
    with pytest.raises(ValidationError) as refused:
        normalize(envelope)
    assert any(error["loc"] == (field,) for error in refused.value.errors())


@pytest.mark.parametrize("source", CIVIC, ids=str)
@pytest.mark.parametrize("axis", ["longitude", "latitude"])
def test_a_coordinate_too_large_for_a_float_is_a_value_error(source: Source, axis: str):
    payload = {"longitude": 120.6, "latitude": 28.0, axis: 10**400}
    with pytest.raises(ValueError):
        normalize(_envelope(source, payload, "X-1"))


@pytest.mark.parametrize("axis", ["long", "lat"])
def test_an_open311_coordinate_too_large_for_a_float_is_a_value_error(axis: str):
    payload = {"service_code": "x", "requested_at": "2026-05-01T08:00:00+08:00", "client": "k",
               "long": 120.6, "lat": 28.0, axis: 10**400}  # fmt: skip
    with pytest.raises(ValueError):
        normalize(_envelope(Source.OPEN311, payload, "X-1"))


# Open311 GeoReport v2: what the API stores (Open311Request, masked, as JSON) is the payload.

SERVICE_CODES = st.sampled_from([category.code for category in PACK.categories]) | st.text(
    CJK | st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=64
)


def _max_length(field: str) -> int:
    return int(_constraint(Open311Request, field, "maxLength"))


@st.composite
def _open311_payloads(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """(payload, expectations) for one valid Open311 request as the API stores it."""
    located = draw(st.booleans())
    address = draw(_texts(_max_length("address_string")))
    wgs = None
    fields: dict[str, Any] = {
        "service_code": draw(SERVICE_CODES),
        "description": draw(st.just("") | _texts(_max_length("description"))),
        "requested_at": draw(TIMES.filter(lambda moment: moment.tzinfo is not None)),
        "client": f"key-{draw(st.uuids())}",
        # Without a point an address is required; with one it is optional.
        "address_string": draw(st.none() | st.just(address)) if located else address,
        "address_id": draw(st.none() | st.from_regex(r"[A-Z0-9-]{1,64}", fullmatch=True)),
        "email": draw(st.none() | st.just("a***@example.org")),
        "phone": draw(st.none() | st.just("138****5678")),
        "first_name": draw(st.none() | _texts(_max_length("first_name"))),
        "account_id": draw(st.none() | st.from_regex(r"[a-z0-9]{1,32}", fullmatch=True)),
        "media_url": draw(st.none() | st.just("https://img.example.org/a/1.jpg")),
        "attributes": draw(
            st.dictionaries(
                st.from_regex(r"[a-z_]{1,16}", fullmatch=True),
                st.text(ASCII, max_size=20) | st.lists(st.text(ASCII, max_size=20), max_size=3),
                max_size=3,
            )
        ),
    }
    if located:
        wgs = (
            draw(st.floats(WEST + MARGIN, EAST - MARGIN)),
            draw(st.floats(SOUTH + MARGIN, NORTH - MARGIN)),
        )
        fields["long"], fields["lat"] = wgs
    # As dispatch/open311/views.py stores it: validated, then dumped as JSON without the Nones.
    payload = Open311Request.model_validate(fields).model_dump(mode="json", exclude_none=True)
    return payload, {"instant": fields["requested_at"], "wgs": wgs}


@PROPERTY
@given(data=st.data())
def test_a_valid_open311_request_normalises_to_a_faithful_event(data: st.DataObject):
    payload, expect = data.draw(_open311_payloads())
    external_id = uuid.uuid4().hex
    envelope = _envelope(Source.OPEN311, payload, external_id)

    event = normalize(envelope)

    assert event.source is Source.OPEN311
    assert (event.event_id, event.external_id) == (envelope.event_id, external_id)
    assert event.occurred_at == expect["instant"]
    assert event.raw == payload
    if expect["wgs"] is None:
        assert event.location is None
        assert event.address == payload["address_string"]
    else:
        # GeoReport v2 is WGS-84: the point is kept exactly.
        location = event.location
        assert location is not None and location.source_crs is Crs.WGS84
        assert (location.lon, location.lat) == expect["wgs"] == (payload["long"], payload["lat"])
        assert event.address == payload.get("address_string")
    _check_text(event.text, payload["description"])
    assert event.text == clean_text(payload["description"])
    # The citizen chose the service: it is the category, with full confidence.
    assert event.category == event.source_category == payload["service_code"]
    assert event.category_confidence == 1.0
    assert event.priority is Priority.NORMAL
    assert loads(EventV1, dumps(event)) == event


OPEN311_FIELDS = sorted(Open311Request.model_fields)


@PROPERTY
@given(data=st.data())
def test_any_json_ish_open311_payload_normalises_or_raises_value_error(data: st.DataObject):
    valid, _ = data.draw(_open311_payloads())
    removed = data.draw(st.sets(st.sampled_from(sorted(valid)), max_size=3))
    replaced = data.draw(
        st.dictionaries(st.sampled_from(OPEN311_FIELDS) | st.text(max_size=12), SCALARS, max_size=4)
    )
    mutated = {k: v for k, v in valid.items() if k not in removed} | replaced
    payload = data.draw(
        st.one_of(st.just(mutated), st.dictionaries(st.sampled_from(OPEN311_FIELDS), SCALARS)),
        label="payload",
    )
    try:
        event = normalize(_envelope(Source.OPEN311, payload, uuid.uuid4().hex))
    except ValueError:  # pydantic's ValidationError is one
        return
    assert isinstance(event, EventV1)


@PROPERTY
@given(data=st.data())
def test_a_nul_character_in_an_open311_text_is_refused_naming_the_field(data: st.DataObject):
    payload, _ = data.draw(_open311_payloads())
    field = data.draw(st.sampled_from(["description", "address_string"]), label="field")
    text = payload.get(field) or ""
    cut = data.draw(st.integers(0, len(text)), label="cut")
    payload[field] = (text[:cut] + "\x00" + text[cut:])[: _max_length(field)]
    if "\x00" not in payload[field]:
        payload[field] = "\x00" + payload[field][1:]
    with pytest.raises(ValidationError) as refused:
        normalize(_envelope(Source.OPEN311, payload, uuid.uuid4().hex))
    assert any(error["loc"] == (field,) for error in refused.value.errors())
