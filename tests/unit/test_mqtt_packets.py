"""MQTT codec (iot_ingest/mqtt/packets.py) and the benchmark client against an in-test broker."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iot_ingest.mqtt import packets as p
from iot_ingest.mqtt.client import MqttClient, MqttError
from iot_ingest.mqtt.packets import (
    V5,
    V311,
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    MalformedPacket,
    Packet,
    PacketReader,
    PingReq,
    PingResp,
    PubAck,
    Publish,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
)
from tests.mqtt_bytes import frame, varint

LEVELS = [V311, V5]
MAX = 1 << 20


def s(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def reader(level: int = V311, max_packet_bytes: int = MAX) -> PacketReader:
    r = PacketReader(max_packet_bytes=max_packet_bytes)
    r.protocol_level = level
    return r


def parse(data: bytes, level: int = V311) -> list[Packet]:
    return reader(level).feed(data)


def parse_one(data: bytes, level: int = V311) -> Packet:
    packets = parse(data, level)
    assert len(packets) == 1
    return packets[0]


def refused(data: bytes, reason_code: int, level: int = V311, match: str | None = None) -> None:
    with pytest.raises(MalformedPacket, match=match) as info:
        parse(data, level)
    assert info.value.reason_code == reason_code


# CONNECT ---------------------------------------------------------------------------------------

# As paho-mqtt sends them: client id "dev-1", user name "tok", password "pw", keepalive 60,
# clean session; the v5 one with Session Expiry Interval 3600 and Receive Maximum 20.
PAHO_CONNECT_V311 = b"\x10\x1a\x00\x04MQTT\x04\xc2\x00\x3c\x00\x05dev-1\x00\x03tok\x00\x02pw"
PAHO_CONNECT_V5 = (
    b"\x10\x23"
    b"\x00\x04MQTT\x05\xc2\x00\x3c"
    b"\x08\x11\x00\x00\x0e\x10\x21\x00\x14"
    b"\x00\x05dev-1"
    b"\x00\x03tok"
    b"\x00\x02pw"
)


def test_connect_v311_bytes() -> None:
    encoded = p.encode_connect(client_id="dev-1", username="tok", password=b"pw", level=V311)
    assert encoded == PAHO_CONNECT_V311
    r = reader()
    assert r.feed(PAHO_CONNECT_V311) == [
        Connect(4, "dev-1", True, 60, "tok", b"pw", {}, None, None, 0, False)
    ]
    assert r.protocol_level == V311


def test_connect_v5_bytes() -> None:
    properties = {p.SESSION_EXPIRY_INTERVAL: 3600, p.RECEIVE_MAXIMUM: 20}
    encoded = p.encode_connect(
        client_id="dev-1", username="tok", password=b"pw", level=V5, properties=properties
    )
    assert encoded == PAHO_CONNECT_V5
    r = reader()
    assert r.feed(PAHO_CONNECT_V5) == [Connect(5, "dev-1", True, 60, "tok", b"pw", properties)]
    assert r.protocol_level == V5
    # Later packets are parsed as MQTT 5: PUBACK with a reason code.
    assert r.feed(b"\x40\x03\x00\x01\x10") == [PubAck(1, 0x10)]


@pytest.mark.parametrize("level", LEVELS)
def test_connect_round_trip(level: int) -> None:
    properties = {p.USER_PROPERTY: [("a", "1"), ("a", "2")]} if level == V5 else {}
    encoded = p.encode_connect(
        client_id="",
        username=None,
        keepalive=0,
        level=level,
        clean_start=False,
        properties=properties,
    )
    assert parse_one(encoded) == Connect(level, "", False, 0, None, None, properties)


@pytest.mark.parametrize("level", LEVELS)
def test_connect_with_will(level: int) -> None:
    # will flag, will QoS 1, will retain, clean start, user name
    head = s("MQTT") + bytes((level, 0xAE)) + b"\x00\x0a"
    will_properties = b"\x05\x18\x00\x00\x00\x0a" if level == V5 else b""
    body = (
        head
        + (b"\x00" if level == V5 else b"")
        + s("id")
        + will_properties
        + s("dead")
        + b"\x00\x03bye"
        + s("tok")
    )
    assert parse_one(frame(0x10, body)) == Connect(
        level, "id", True, 10, "tok", None, {}, "dead", b"bye", 1, True
    )


def connect_body(flags: int, level: int = V311) -> bytes:
    props = b"\x00" if level == V5 else b""
    return s("MQTT") + bytes((level, flags)) + b"\x00\x3c" + props + s("c")


@pytest.mark.parametrize(
    ("flags", "level"),
    [
        (0x03, V311),  # reserved bit
        (0x1C, V311),  # will QoS 3
        (0x08, V5),  # will QoS without a will
        (0x20, V311),  # will retain without a will
        (0x40, V311),  # password without user name
    ],
)
def test_connect_bad_flags(flags: int, level: int) -> None:
    refused(frame(0x10, connect_body(flags, level)), 0x81)


def test_connect_v5_password_without_user_name() -> None:
    body = connect_body(0x40, V5) + b"\x00\x02pw"
    assert parse_one(frame(0x10, body)) == Connect(5, "c", False, 60, None, b"pw", {})


def test_mqisdp_level_3_is_returned_for_the_server_to_refuse() -> None:
    body = s("MQIsdp") + b"\x03\x02\x00\x3c" + s("old-client")
    r = reader()
    assert r.feed(frame(0x10, body)) == [Connect(3, "", False, 0, None, None, {})]
    assert r.protocol_level == V311


def test_unknown_mqtt_level_is_returned() -> None:
    assert parse_one(frame(0x10, s("MQTT") + b"\x06\x02\x00\x3c")) == Connect(
        6, "", False, 0, None, None, {}
    )


@pytest.mark.parametrize("name", ["HTTP", "MQIsdp"])
def test_unknown_protocol_name_is_malformed(name: str) -> None:
    refused(frame(0x10, s(name) + b"\x04\x02\x00\x3c" + s("c")), 0x81)


def test_second_connect_is_a_protocol_error() -> None:
    r = reader()
    r.feed(PAHO_CONNECT_V311)
    with pytest.raises(MalformedPacket) as info:
        r.feed(PAHO_CONNECT_V311)
    assert info.value.reason_code == 0x82


def test_connect_truncated_or_with_trailing_bytes() -> None:
    refused(frame(0x10, PAHO_CONNECT_V311[2:-2]), 0x81, match="middle")  # no password bytes
    refused(frame(0x10, PAHO_CONNECT_V311[2:] + b"\x00"), 0x81, match="unused")


# Round trips of the other packets ----------------------------------------------------------


@pytest.mark.parametrize("level", LEVELS)
def test_connack_round_trip(level: int) -> None:
    properties = (
        {p.RECEIVE_MAXIMUM: 100, p.MAXIMUM_QOS: 1, p.ASSIGNED_CLIENT_IDENTIFIER: "hub-1"}
        if level == V5
        else {}
    )
    encoded = p.encode_connack(
        level=level, reason_code=0, session_present=True, properties=properties
    )
    assert parse_one(encoded, level) == ConnAck(True, 0, properties)
    refusal = p.encode_connack(level=level, reason_code=0x86 if level == V5 else 0x04)
    assert parse_one(refusal, level) == ConnAck(False, 0x86 if level == V5 else 0x04, {})


def test_connack_v311_bytes() -> None:
    assert p.encode_connack(level=V311, reason_code=5) == b"\x20\x02\x00\x05"
    assert p.encode_connack(level=V5) == b"\x20\x03\x00\x00\x00"


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize(
    ("qos", "packet_id", "retain", "dup"), [(0, None, False, False), (1, 7, True, True)]
)
def test_publish_round_trip(
    level: int, qos: int, packet_id: int | None, retain: bool, dup: bool
) -> None:
    payload = bytes(range(256)) * 3
    encoded = p.encode_publish(
        "v1/devices/me/telemetry",
        payload,
        level=level,
        qos=qos,
        packet_id=packet_id,
        retain=retain,
        dup=dup,
    )
    expected = Publish("v1/devices/me/telemetry", payload, qos, packet_id, retain, dup, {})
    assert parse_one(encoded, level) == expected


def test_publish_bytes() -> None:
    assert p.encode_publish("a/b", b"hi", level=V311) == b"\x30\x07\x00\x03a/bhi"
    assert p.encode_publish("a/b", b"hi", level=V5, qos=1, packet_id=2, retain=True) == (
        b"\x33\x0a\x00\x03a/b\x00\x02\x00hi"
    )


def test_publish_v5_properties() -> None:
    properties: dict[int, Any] = {
        p.PAYLOAD_FORMAT_INDICATOR: 1,
        p.MESSAGE_EXPIRY_INTERVAL: 60,
        p.CONTENT_TYPE: "application/json",
        p.RESPONSE_TOPIC: "v1/devices/me/rpc/response/1",
        p.CORRELATION_DATA: b"\x00\x01",
        p.USER_PROPERTY: [("k", "v"), ("k", "w")],
        p.SUBSCRIPTION_IDENTIFIER: [1, 300],
    }
    encoded = p.encode_publish("t", b"{}", level=V5, qos=1, packet_id=1, properties=properties)
    assert parse_one(encoded, V5) == Publish("t", b"{}", 1, 1, properties=properties)


def test_publish_empty_topic_needs_a_topic_alias() -> None:
    aliased = p.encode_publish("", b"x", level=V5, properties={p.TOPIC_ALIAS: 3})
    assert parse_one(aliased, V5) == Publish("", b"x", 0, None, properties={p.TOPIC_ALIAS: 3})
    refused(p.encode_publish("", b"x", level=V5), 0x82, V5)
    refused(p.encode_publish("", b"x", level=V311), 0x82)


@pytest.mark.parametrize("level", LEVELS)
def test_puback_round_trip(level: int) -> None:
    assert parse_one(p.encode_puback(9, level=level), level) == PubAck(9)
    refusal = p.encode_puback(9, level=level, reason_code=0x99, reason_string="not JSON")
    expected = PubAck(9, 0x99, {p.REASON_STRING: "not JSON"}) if level == V5 else PubAck(9)
    assert parse_one(refusal, level) == expected


def test_puback_v5_short_forms() -> None:
    assert p.encode_puback(1, level=V5) == b"\x40\x02\x00\x01"
    assert parse_one(b"\x40\x02\x00\x01", V5) == PubAck(1, 0, {})
    assert parse_one(b"\x40\x03\x00\x01\x80", V5) == PubAck(1, 0x80, {})
    assert parse_one(b"\x40\x04\x00\x01\x10\x00", V5) == PubAck(1, 0x10, {})
    assert p.encode_puback(1, level=V5, reason_code=0x97) == b"\x40\x04\x00\x01\x97\x00"
    refused(b"\x40\x03\x00\x01\x80", 0x81, V311)  # 3.1.1 has no reason code


@pytest.mark.parametrize("level", LEVELS)
def test_subscribe_round_trip(level: int) -> None:
    filters = [("v1/devices/me/rpc/request/+", 1), ("v1/devices/me/attributes", 0)]
    encoded = p.encode_subscribe(3, filters, level=level)
    assert parse_one(encoded, level) == Subscribe(3, filters)
    assert parse_one(p.encode_suback(3, [1, 0, 0x80], level=level), level) == SubAck(
        3, [1, 0, 0x80]
    )


def test_subscribe_v5_options_and_properties() -> None:
    # No Local, Retain As Published and Retain Handling 2 are ignored; QoS is the low 2 bits.
    body = b"\x00\x05" + b"\x02\x0b\x05" + s("a/#") + b"\x2d"
    assert parse_one(frame(0x82, body), V5) == Subscribe(
        5, [("a/#", 1)], {p.SUBSCRIPTION_IDENTIFIER: 5}
    )
    refused(frame(0x82, b"\x00\x05\x00" + s("a") + b"\x41"), 0x81, V5)  # reserved bit 6
    refused(frame(0x82, b"\x00\x05\x00" + s("a") + b"\x03"), 0x82, V5)  # QoS 3
    refused(frame(0x82, b"\x00\x05" + s("a") + b"\x04"), 0x81, V311)  # reserved in 3.1.1


@pytest.mark.parametrize("level", LEVELS)
def test_subscribe_needs_filters_and_packet_id(level: int) -> None:
    props = b"\x00" if level == V5 else b""
    refused(frame(0x82, b"\x00\x05" + props), 0x82, level)
    refused(frame(0x82, b"\x00\x00" + props + s("a") + b"\x00"), 0x82, level)
    refused(frame(0xA2, b"\x00\x05" + props), 0x82, level)


@pytest.mark.parametrize("level", LEVELS)
def test_unsubscribe_round_trip(level: int) -> None:
    encoded = p.encode_unsubscribe(4, ["a/b", "c/#"], level=level)
    assert parse_one(encoded, level) == Unsubscribe(4, ["a/b", "c/#"])
    codes = [0, 0x11] if level == V5 else []
    unsuback = p.encode_unsuback(4, [0, 0x11], level=level)
    assert parse_one(unsuback, level) == UnsubAck(4, codes)


def test_unsuback_v311_has_no_payload() -> None:
    assert p.encode_unsuback(4, [0], level=V311) == b"\xb0\x02\x00\x04"


def test_ping_round_trip() -> None:
    assert parse(p.encode_pingreq() + p.encode_pingresp()) == [PingReq(), PingResp()]
    refused(b"\xc0\x01\x00", 0x81)


@pytest.mark.parametrize("level", LEVELS)
def test_disconnect_round_trip(level: int) -> None:
    assert p.encode_disconnect(level=level) == b"\xe0\x00"
    assert parse_one(b"\xe0\x00", level) == Disconnect()
    encoded = p.encode_disconnect(level=level, reason_code=0x8E, reason_string="taken over")
    expected = Disconnect(0x8E, {p.REASON_STRING: "taken over"})
    assert parse_one(encoded, level) == (expected if level == V5 else Disconnect())


def test_disconnect_v5_short_forms() -> None:
    assert p.encode_disconnect(level=V5, reason_code=0x8D) == b"\xe0\x01\x8d"
    assert parse_one(b"\xe0\x01\x8d", V5) == Disconnect(0x8D)
    assert parse_one(b"\xe0\x02\x04\x00", V5) == Disconnect(0x04)
    refused(b"\xe0\x01\x8d", 0x81, V311)


def test_auth_is_mqtt_5_only() -> None:
    body = b"\x18\x08\x15" + s("SCRAM")  # continue authentication, method SCRAM
    assert parse_one(frame(0xF0, body), V5) == Auth(0x18, {p.AUTHENTICATION_METHOD: "SCRAM"})
    assert parse_one(b"\xf0\x00", V5) == Auth()
    refused(b"\xf0\x00", 0x81, V311)


# Framing ---------------------------------------------------------------------------------------


def stream(level: int) -> tuple[bytes, list[Packet]]:
    """Several packets back to back, and what they parse to."""
    big = bytes(range(256)) * 600  # a 3-byte remaining length
    data = b"".join(
        [
            p.encode_publish("a", b"1", level=level),
            p.encode_publish("b/c", big, level=level, qos=1, packet_id=65535),
            p.encode_pingreq(),
            p.encode_subscribe(2, [("x/+", 1)], level=level),
            p.encode_puback(65535, level=level),
            p.encode_disconnect(level=level),
        ]
    )
    expected: list[Packet] = [
        Publish("a", b"1", 0, None),
        Publish("b/c", big, 1, 65535),
        PingReq(),
        Subscribe(2, [("x/+", 1)]),
        PubAck(65535),
        Disconnect(),
    ]
    return data, expected


@pytest.mark.parametrize("level", LEVELS)
def test_several_packets_in_one_feed(level: int) -> None:
    data, expected = stream(level)
    assert parse(data, level) == expected


@pytest.mark.parametrize("level", LEVELS)
def test_split_byte_by_byte(level: int) -> None:
    data, expected = stream(level)
    r = reader(level)
    got: list[Packet] = []
    for i in range(len(data)):
        got.extend(r.feed(data[i : i + 1]))
    assert got == expected


@given(cuts=st.lists(st.integers(min_value=0, max_value=155_000), max_size=20))
@settings(max_examples=100, deadline=None)
def test_any_split_gives_the_same_packets(cuts: list[int]) -> None:
    data, expected = stream(V5)
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    r = reader(V5)
    got: list[Packet] = []
    for start, end in itertools.pairwise(bounds):
        got.extend(r.feed(data[start:end]))
    assert got == expected


def test_large_payload_in_chunks() -> None:
    payload = b"x" * 3_000_000
    data = p.encode_publish("t", payload, level=V311, qos=1, packet_id=1) + p.encode_pingreq()
    r = reader(max_packet_bytes=4_000_000)
    got: list[Packet] = []
    for start in range(0, len(data), 65536):
        got.extend(r.feed(memoryview(data)[start : start + 65536].tobytes()))
    assert got == [Publish("t", payload, 1, 1), PingReq()]


def test_too_large_is_refused_from_the_header_alone() -> None:
    ten_mb = p.encode_publish("t", b"\x00" * 10_000_000, level=V311)
    r = reader(max_packet_bytes=MAX)
    assert r.feed(ten_mb[:4]) == []  # remaining length not complete yet
    with pytest.raises(MalformedPacket, match="exceeds the maximum of 1048576") as info:
        r.feed(ten_mb[4:5])
    assert info.value.reason_code == 0x95


def test_packet_exactly_at_the_maximum_is_accepted() -> None:
    packet = p.encode_publish("t", b"x" * 100, level=V311)
    assert parse_one(packet) == Publish("t", b"x" * 100, 0, None)
    assert reader(max_packet_bytes=len(packet)).feed(packet) == [Publish("t", b"x" * 100, 0, None)]
    with pytest.raises(MalformedPacket):
        reader(max_packet_bytes=len(packet) - 1).feed(packet)


def test_remaining_length_of_five_bytes() -> None:
    refused(b"\x30\xff\xff\xff\xff\x01", 0x81, match="longer than 4 bytes")
    r = reader()
    assert r.feed(b"\x30\xff\xff\xff") == []
    with pytest.raises(MalformedPacket):
        r.feed(b"\xff")


def test_non_minimal_remaining_length_is_tolerated() -> None:
    assert parse(b"\xc0\x80\x00" + b"\x40\x82\x80\x00\x00\x01") == [PingReq(), PubAck(1)]


# Refusals --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "first",
    [
        0x11,  # CONNECT
        0x80,  # SUBSCRIBE needs 0b0010
        0xA0,  # UNSUBSCRIBE needs 0b0010
        0x42,  # PUBACK
        0xC1,  # PINGREQ
        0xE8,  # DISCONNECT
        0x00,  # reserved type 0
    ],
)
def test_bad_fixed_header_flags(first: int) -> None:
    refused(bytes((first,)), 0x81)  # refused from the first byte alone


@pytest.mark.parametrize(
    ("first", "reason_code"),
    [
        (0x34, 0x9B),  # PUBLISH QoS 2
        (0x36, 0x81),  # PUBLISH QoS 3
        (0x38, 0x81),  # QoS 0 with DUP
        (0x50, 0x9B),  # PUBREC
        (0x62, 0x9B),  # PUBREL
        (0x70, 0x9B),  # PUBCOMP
        (0x60, 0x81),  # PUBREL with wrong flags
    ],
)
def test_qos_2_and_3(first: int, reason_code: int) -> None:
    refused(bytes((first,)) + b"\x02\x00\x01", reason_code)


def test_qos_2_message() -> None:
    refused(b"\x34", 0x9B, match="QoS 2 is not supported")


@pytest.mark.parametrize("topic", ["a/+/b", "#", "a/#"])
@pytest.mark.parametrize("level", LEVELS)
def test_wildcard_topic_name(topic: str, level: int) -> None:
    refused(p.encode_publish(topic, b"", level=level), 0x82, level, match="wildcard")


def test_a_refusal_quotes_only_the_start_of_a_long_topic() -> None:
    # Regression: the whole 64 KiB topic went into the message, too long for a reason string.
    with pytest.raises(MalformedPacket) as info:
        parse(p.encode_publish("#" * 65_000, b"", level=V5), V5)
    assert str(info.value) == f"wildcard in topic name {'#' * 40!r}…"


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff",  # never valid
        b"\xc3\x28",  # broken sequence
        b"\xed\xa0\x80",  # a UTF-16 surrogate
        b"\xc0\xaf",  # overlong "/"
        b"a\x00b",  # U+0000
    ],
)
def test_invalid_utf8(raw: bytes) -> None:
    body = len(raw).to_bytes(2, "big") + raw + b"payload"
    refused(frame(0x30, body), 0x81)
    refused(frame(0x10, s("MQTT") + b"\x04\x02\x00\x3c" + len(raw).to_bytes(2, "big") + raw), 0x81)


def test_non_ascii_topic_is_fine() -> None:
    assert parse_one(p.encode_publish("温州/水位", b"", level=V311)) == Publish(
        "温州/水位", b"", 0, None
    )


@pytest.mark.parametrize(
    ("data", "level"),
    [
        (b"\x40\x03\x00\x01\x00", V311),  # PUBACK
        (b"\x20\x03\x00\x00\x00", V311),  # CONNACK
        (b"\xb0\x03\x00\x01\x00", V311),  # UNSUBACK
        (b"\xe0\x01\x00", V311),  # DISCONNECT
        (b"\x40\x05\x00\x01\x00\x00\x00", V5),  # PUBACK after its properties
        (b"\xe0\x03\x00\x00\x00", V5),  # DISCONNECT after its properties
    ],
)
def test_trailing_bytes(data: bytes, level: int) -> None:
    refused(data, 0x81, level, match="unused")


@pytest.mark.parametrize(
    ("data", "level"),
    [
        (b"\x40\x01\x00", V311),  # PUBACK without a whole packet id
        (b"\x30\x01\x00", V311),  # PUBLISH without a whole topic length
        (b"\x30\x03\x00\x05a", V311),  # topic longer than the packet
        (b"\x32\x04\x00\x01a\x00", V311),  # packet id cut
        (b"\x30\x04\x00\x01a\x62", V5),  # property length 98 in a 4-byte packet
        (b"\x30\x03\x00\x01a", V5),  # no property length at all
        (b"\x40\x05\x00\x01\x00\x05\x1f", V5),  # property block longer than the packet
    ],
)
def test_shorter_than_its_fields(data: bytes, level: int) -> None:
    refused(data, 0x81, level)


def test_duplicate_property_is_a_protocol_error() -> None:
    # Message Expiry Interval twice
    props = b"\x0a" + b"\x02\x00\x00\x00\x3c" + b"\x02\x00\x00\x00\x3c"
    refused(frame(0x30, s("t") + props + b"x"), 0x82, V5, match="twice")


def test_user_property_may_repeat() -> None:
    props = b"\x26" + s("a") + s("") + b"\x26" + s("a") + s("b")
    packet = parse_one(frame(0x30, s("t") + varint(len(props)) + props + b"x"), V5)
    assert isinstance(packet, Publish)
    assert packet.properties == {p.USER_PROPERTY: [("a", ""), ("a", "b")]}


def test_unknown_property_is_malformed() -> None:
    refused(frame(0x30, s("t") + b"\x02\x7f\x00" + b"x"), 0x81, V5, match="unknown property")


def test_property_of_another_packet_is_malformed() -> None:
    # Session Expiry Interval belongs to CONNECT, CONNACK and DISCONNECT, not PUBLISH.
    refused(frame(0x30, s("t") + b"\x05\x11\x00\x00\x00\x01"), 0x81, V5, match="not allowed")


@pytest.mark.parametrize(
    "props",
    [
        b"\x02\x01\x02",  # Payload Format Indicator 2
        b"\x02\x0b\x00",  # Subscription Identifier 0
    ],
)
def test_bad_property_values(props: bytes) -> None:
    refused(frame(0x30, s("t") + props), 0x82, V5)


def test_receive_maximum_zero_in_connect() -> None:
    body = s("MQTT") + b"\x05\x02\x00\x3c" + b"\x03\x21\x00\x00" + s("c")
    refused(frame(0x10, body), 0x82)


def test_auth_before_connect_is_read_as_311() -> None:
    refused(b"\xf0\x00", 0x81)


def test_error_attributes() -> None:
    error = MalformedPacket("x")
    assert isinstance(error, ValueError)
    assert error.reason_code == 0x81
    assert p.REASON_NAMES[0x9B] == "QoS not supported"
    assert p.REASON_NAMES[0x05] == "not authorized"


def test_encoders_refuse_misuse() -> None:
    with pytest.raises(ValueError, match="protocol level"):
        p.encode_disconnect(level=3)
    with pytest.raises(ValueError, match="packet identifier"):
        p.encode_publish("t", b"", level=V5, qos=1)
    with pytest.raises(ValueError, match="MQTT 5"):
        p.encode_publish("t", b"", level=V311, properties={p.CONTENT_TYPE: "x"})


# The client against an in-test broker --------------------------------------------------------


class Broker:
    """Answers CONNECT, PUBLISH (QoS 1), SUBSCRIBE and PINGREQ with the codec's encoders."""

    def __init__(
        self,
        *,
        connack_reason: int = 0,
        connack_properties: dict[int, Any] | None = None,
        puback_reason: int = 0,
        on_publish: Callable[[Publish, int], bytes | None] | None = None,
    ) -> None:
        self.connack_reason = connack_reason
        self.connack_properties = connack_properties
        self.puback_reason = puback_reason
        self.on_publish = on_publish
        self.received: list[Packet] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def __aenter__(self) -> Broker:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for writer in self.writers:
            writer.close()
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, stream: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        parser = PacketReader(max_packet_bytes=MAX)
        while data := await stream.read(65536):
            for packet in parser.feed(data):
                self.received.append(packet)
                answer = self._answer(packet, parser.protocol_level)
                if answer:
                    writer.write(answer)
            if self.received and isinstance(self.received[-1], Disconnect):
                break
        writer.close()

    def _answer(self, packet: Packet, level: int) -> bytes | None:
        if isinstance(packet, Connect):
            properties = self.connack_properties if level == V5 else None
            return p.encode_connack(
                level=level, reason_code=self.connack_reason, properties=properties
            )
        if isinstance(packet, Publish):
            if self.on_publish is not None:
                return self.on_publish(packet, level)
            if packet.packet_id is None:
                return None
            return p.encode_puback(packet.packet_id, level=level, reason_code=self.puback_reason)
        if isinstance(packet, Subscribe):
            codes = [min(qos, 1) for _, qos in packet.filters]
            rpc = p.encode_publish("rpc/1", b"{}", level=level, qos=1, packet_id=7)
            return p.encode_suback(packet.packet_id, codes, level=level) + rpc
        if isinstance(packet, PingReq):
            return p.encode_pingresp()
        return None


async def until(condition: Callable[[], bool]) -> None:
    # Polling keeps the broker free of test-specific events; 5 ms steps are quick enough.
    async with asyncio.timeout(5):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


@pytest.mark.parametrize("level", LEVELS)
async def test_client_publishes_subscribes_and_pings(level: int) -> None:
    async with Broker() as broker:
        client = await MqttClient.connect("127.0.0.1", broker.port, username="tok", level=level)
        assert client.connack == ConnAck(False, 0, {})
        codes = await asyncio.gather(
            *(client.publish("v1/devices/me/telemetry", b'{"t":%d}' % i) for i in range(200))
        )
        assert codes == [0] * 200
        assert await client.publish("v1/devices/me/telemetry", b"{}", qos=0) == 0
        assert await client.subscribe([("rpc/+", 1), ("attr", 0)]) == [1, 0]
        message = await asyncio.wait_for(client.messages.get(), 5)
        assert message == Publish("rpc/1", b"{}", 1, 7)
        await client.ping()
        await client.close()
        assert client.closed
        await until(lambda: isinstance(broker.received[-1], Disconnect))
    connect = broker.received[0]
    assert isinstance(connect, Connect)
    assert (connect.protocol_level, connect.username) == (level, "tok")
    publishes = [x for x in broker.received if isinstance(x, Publish)]
    assert len(publishes) == 201
    assert len({x.packet_id for x in publishes if x.qos}) == 200  # all in flight at once
    assert PubAck(7) in broker.received  # the client acknowledged the server's QoS 1 PUBLISH
    assert PingReq() in broker.received


async def test_client_gets_the_puback_reason() -> None:
    async with Broker(puback_reason=0x99) as broker:
        client = await MqttClient.connect("127.0.0.1", broker.port, username="tok")
        assert await client.publish("t", b"not json") == 0x99
        await client.close()


@pytest.mark.parametrize(("level", "reason_code"), [(V5, 0x86), (V311, 0x05)])
async def test_client_connect_refused(level: int, reason_code: int) -> None:
    async with Broker(connack_reason=reason_code) as broker:
        with pytest.raises(MqttError) as info:
            await MqttClient.connect("127.0.0.1", broker.port, username="bad", level=level)
    assert info.value.reason_code == reason_code


async def test_client_server_disconnect_fails_waiting_publishes() -> None:
    def take_over(packet: Publish, level: int) -> bytes:
        return p.encode_disconnect(level=level, reason_code=0x8E)

    async with Broker(on_publish=take_over) as broker:
        client = await MqttClient.connect("127.0.0.1", broker.port, username="tok")
        with pytest.raises(ConnectionError):
            await client.publish("t", b"x")
        assert client.closed
        assert client.disconnect_reason == 0x8E
        with pytest.raises(ConnectionError):
            await client.publish("t", b"x")
        await client.close()


async def test_client_keeps_to_the_receive_maximum() -> None:
    held: list[tuple[int, int]] = []

    def hold(packet: Publish, level: int) -> None:
        assert packet.packet_id is not None
        held.append((packet.packet_id, level))

    async with Broker(on_publish=hold, connack_properties={p.RECEIVE_MAXIMUM: 2}) as broker:
        client = await MqttClient.connect("127.0.0.1", broker.port, username="tok")
        tasks = [asyncio.create_task(client.publish("t", b"x")) for _ in range(5)]
        await until(lambda: len(held) == 2)
        await asyncio.sleep(0.05)
        assert len(held) == 2  # the other three wait for a free slot
        writer = broker.writers[0]
        while held or not all(task.done() for task in tasks):
            if held:
                packet_id, level = held.pop()
                writer.write(p.encode_puback(packet_id, level=level))
            await asyncio.sleep(0.005)
        assert [task.result() for task in tasks] == [0] * 5
        await client.close()


async def test_client_connect_to_a_closed_port() -> None:
    async with Broker() as broker:
        port = broker.port
    with pytest.raises(OSError):
        await MqttClient.connect("127.0.0.1", port, username="tok", timeout_s=2)


def test_a_refusal_before_connack_uses_a_code_connack_may_carry() -> None:
    from iot_ingest.mqtt.session import CONNACK_REFUSALS, connack_reason

    assert connack_reason(0x8B) == 0x88  # shutting down → server unavailable
    assert connack_reason(0x8D) == 0x80  # keep-alive timeout: unspecified
    assert connack_reason(0x8E) == 0x80  # session taken over
    assert connack_reason(0x97) == 0x97 and connack_reason(0x84) == 0x84  # already valid
    assert all(connack_reason(code) in CONNACK_REFUSALS for code in range(0x80, 0x100))
