"""MQTT 3.1.1 (protocol level 4) and MQTT 5 (level 5) packet codec: pure, no I/O.

`PacketReader` turns a byte stream into packet dataclasses; the ``encode_*`` functions build
the bytes of each packet. QoS 2 is not supported: PUBLISH with QoS 2 and the PUBREC, PUBREL and
PUBCOMP packets raise `MalformedPacket` with reason 0x9B (QoS not supported).

Every protocol violation raises `MalformedPacket`; its ``reason_code`` is what an MQTT 5 server
puts in the DISCONNECT it sends before closing (0x81 malformed packet, 0x82 protocol error,
0x95 packet too large, 0x9B QoS not supported). A 3.1.1 server just closes.

Properties (MQTT 5) are a ``dict[int, value]`` keyed by the identifiers below: byte, two-byte,
four-byte and variable byte integers are ``int``, UTF-8 strings ``str``, binary data ``bytes``.
`USER_PROPERTY` is a ``list[tuple[str, str]]`` (it may repeat), and so is `SUBSCRIPTION_IDENTIFIER`
in a PUBLISH, a ``list[int]``, since a server may send one PUBLISH for several subscriptions.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

V311: Final = 4
V5: Final = 5

MAX_REMAINING_LENGTH: Final = 268_435_455  # the largest 4-byte variable byte integer

# MQTT 5 property identifiers.
PAYLOAD_FORMAT_INDICATOR: Final = 0x01
MESSAGE_EXPIRY_INTERVAL: Final = 0x02
CONTENT_TYPE: Final = 0x03
RESPONSE_TOPIC: Final = 0x08
CORRELATION_DATA: Final = 0x09
SUBSCRIPTION_IDENTIFIER: Final = 0x0B
SESSION_EXPIRY_INTERVAL: Final = 0x11
ASSIGNED_CLIENT_IDENTIFIER: Final = 0x12
SERVER_KEEP_ALIVE: Final = 0x13
AUTHENTICATION_METHOD: Final = 0x15
AUTHENTICATION_DATA: Final = 0x16
REQUEST_PROBLEM_INFORMATION: Final = 0x17
WILL_DELAY_INTERVAL: Final = 0x18
REQUEST_RESPONSE_INFORMATION: Final = 0x19
RESPONSE_INFORMATION: Final = 0x1A
SERVER_REFERENCE: Final = 0x1C
REASON_STRING: Final = 0x1F
RECEIVE_MAXIMUM: Final = 0x21
TOPIC_ALIAS_MAXIMUM: Final = 0x22
TOPIC_ALIAS: Final = 0x23
MAXIMUM_QOS: Final = 0x24
RETAIN_AVAILABLE: Final = 0x25
USER_PROPERTY: Final = 0x26
MAXIMUM_PACKET_SIZE: Final = 0x27
WILDCARD_SUBSCRIPTION_AVAILABLE: Final = 0x28
SUBSCRIPTION_IDENTIFIER_AVAILABLE: Final = 0x29
SHARED_SUBSCRIPTION_AVAILABLE: Final = 0x2A

# Reason codes the codec itself raises.
MALFORMED: Final = 0x81
PROTOCOL_ERROR: Final = 0x82
PACKET_TOO_LARGE: Final = 0x95
QOS_NOT_SUPPORTED: Final = 0x9B

REASON_NAMES: dict[int, str] = {
    0x00: "success",
    # 3.1.1 CONNACK return codes; MQTT 5 gives 0x01..0x05 other meanings in other packets.
    0x01: "unacceptable protocol version",
    0x02: "identifier rejected",
    0x03: "server unavailable",
    0x04: "bad user name or password",
    0x05: "not authorized",
    0x80: "unspecified error",
    0x81: "malformed packet",
    0x82: "protocol error",
    0x84: "unsupported protocol version",
    0x85: "client identifier not valid",
    0x86: "bad user name or password",
    0x87: "not authorized",
    0x88: "server unavailable",
    0x89: "server busy",
    0x8C: "bad authentication method",
    0x8D: "keep alive timeout",
    0x8E: "session taken over",
    0x90: "topic name invalid",
    0x93: "receive maximum exceeded",
    0x94: "topic alias invalid",
    0x95: "packet too large",
    0x96: "message rate too high",
    0x97: "quota exceeded",
    0x99: "payload format invalid",
    0x9A: "retain not supported",
    0x9B: "QoS not supported",
    0x9E: "shared subscriptions not supported",
    0xA1: "subscription identifiers not supported",
    0xA2: "wildcard subscriptions not supported",
}


class MalformedPacket(ValueError):
    """A packet that breaks the protocol; the connection must be closed."""

    def __init__(self, message: str, reason_code: int = MALFORMED) -> None:
        super().__init__(message)
        self.reason_code = reason_code


# ---------------------------------------------------------------------------------------------
# Packets


@dataclass(frozen=True, slots=True)
class Connect:
    """A CONNECT. For a protocol version other than 3.1.1 and 5 only ``protocol_level`` is read
    (3 for MQTT 3.1's "MQIsdp"); the other fields are then empty."""

    protocol_level: int
    client_id: str
    clean_start: bool
    keepalive: int  # seconds
    username: str | None
    password: bytes | None
    properties: dict[int, Any]  # {} for 3.1.1
    will_topic: str | None = None
    will_payload: bytes | None = None
    will_qos: int = 0
    will_retain: bool = False


@dataclass(frozen=True, slots=True)
class ConnAck:
    session_present: bool
    reason_code: int
    properties: dict[int, Any]


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int
    packet_id: int | None  # None for QoS 0
    retain: bool = False
    dup: bool = False
    properties: dict[int, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PubAck:
    packet_id: int
    reason_code: int = 0
    properties: dict[int, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Subscribe:
    packet_id: int
    filters: list[tuple[str, int]]  # (topic filter, requested maximum QoS)
    properties: dict[int, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SubAck:
    packet_id: int
    reason_codes: list[int]
    properties: dict[int, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    packet_id: int
    filters: list[str]
    properties: dict[int, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class UnsubAck:
    packet_id: int
    reason_codes: list[int]  # [] for 3.1.1
    properties: dict[int, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PingReq:
    pass


@dataclass(frozen=True, slots=True)
class PingResp:
    pass


@dataclass(frozen=True, slots=True)
class Disconnect:
    reason_code: int = 0
    properties: dict[int, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Auth:
    reason_code: int = 0
    properties: dict[int, Any] = field(default_factory=dict)


Packet: TypeAlias = (
    Connect
    | ConnAck
    | Publish
    | PubAck
    | Subscribe
    | SubAck
    | Unsubscribe
    | UnsubAck
    | PingReq
    | PingResp
    | Disconnect
    | Auth
)

# Packet types (the high nibble of the first byte).
_CONNECT, _CONNACK, _PUBLISH, _PUBACK, _PUBREC, _PUBREL, _PUBCOMP = range(1, 8)
_SUBSCRIBE, _SUBACK, _UNSUBSCRIBE, _UNSUBACK, _PINGREQ, _PINGRESP, _DISCONNECT, _AUTH = range(8, 16)
# The only fixed-header flags allowed for each packet type but PUBLISH.
_REQUIRED_FLAGS = {_PUBREL: 0b0010, _SUBSCRIBE: 0b0010, _UNSUBSCRIBE: 0b0010}

# ---------------------------------------------------------------------------------------------
# Properties

_BYTE, _TWO, _FOUR, _VARINT, _STRING, _BINARY, _PAIR = range(7)
_KINDS: dict[int, int] = {
    PAYLOAD_FORMAT_INDICATOR: _BYTE,
    MESSAGE_EXPIRY_INTERVAL: _FOUR,
    CONTENT_TYPE: _STRING,
    RESPONSE_TOPIC: _STRING,
    CORRELATION_DATA: _BINARY,
    SUBSCRIPTION_IDENTIFIER: _VARINT,
    SESSION_EXPIRY_INTERVAL: _FOUR,
    ASSIGNED_CLIENT_IDENTIFIER: _STRING,
    SERVER_KEEP_ALIVE: _TWO,
    AUTHENTICATION_METHOD: _STRING,
    AUTHENTICATION_DATA: _BINARY,
    REQUEST_PROBLEM_INFORMATION: _BYTE,
    WILL_DELAY_INTERVAL: _FOUR,
    REQUEST_RESPONSE_INFORMATION: _BYTE,
    RESPONSE_INFORMATION: _STRING,
    SERVER_REFERENCE: _STRING,
    REASON_STRING: _STRING,
    RECEIVE_MAXIMUM: _TWO,
    TOPIC_ALIAS_MAXIMUM: _TWO,
    TOPIC_ALIAS: _TWO,
    MAXIMUM_QOS: _BYTE,
    RETAIN_AVAILABLE: _BYTE,
    USER_PROPERTY: _PAIR,
    MAXIMUM_PACKET_SIZE: _FOUR,
    WILDCARD_SUBSCRIPTION_AVAILABLE: _BYTE,
    SUBSCRIPTION_IDENTIFIER_AVAILABLE: _BYTE,
    SHARED_SUBSCRIPTION_AVAILABLE: _BYTE,
}
# Values the spec calls a protocol error: flags that are not 0 or 1, limits of 0.
_FLAG_PROPERTIES = frozenset(
    {
        PAYLOAD_FORMAT_INDICATOR,
        REQUEST_PROBLEM_INFORMATION,
        REQUEST_RESPONSE_INFORMATION,
        MAXIMUM_QOS,
        RETAIN_AVAILABLE,
        WILDCARD_SUBSCRIPTION_AVAILABLE,
        SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        SHARED_SUBSCRIPTION_AVAILABLE,
    }
)
_NONZERO_PROPERTIES = frozenset({RECEIVE_MAXIMUM, MAXIMUM_PACKET_SIZE, SUBSCRIPTION_IDENTIFIER})

# Which properties each packet may carry; any other one makes the packet malformed.
_CONNECT_PROPERTIES = frozenset(
    {
        SESSION_EXPIRY_INTERVAL,
        RECEIVE_MAXIMUM,
        MAXIMUM_PACKET_SIZE,
        TOPIC_ALIAS_MAXIMUM,
        REQUEST_RESPONSE_INFORMATION,
        REQUEST_PROBLEM_INFORMATION,
        USER_PROPERTY,
        AUTHENTICATION_METHOD,
        AUTHENTICATION_DATA,
    }
)
_WILL_PROPERTIES = frozenset(
    {
        WILL_DELAY_INTERVAL,
        PAYLOAD_FORMAT_INDICATOR,
        MESSAGE_EXPIRY_INTERVAL,
        CONTENT_TYPE,
        RESPONSE_TOPIC,
        CORRELATION_DATA,
        USER_PROPERTY,
    }
)
_CONNACK_PROPERTIES = frozenset(
    {
        SESSION_EXPIRY_INTERVAL,
        RECEIVE_MAXIMUM,
        MAXIMUM_QOS,
        RETAIN_AVAILABLE,
        MAXIMUM_PACKET_SIZE,
        ASSIGNED_CLIENT_IDENTIFIER,
        TOPIC_ALIAS_MAXIMUM,
        REASON_STRING,
        USER_PROPERTY,
        WILDCARD_SUBSCRIPTION_AVAILABLE,
        SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        SHARED_SUBSCRIPTION_AVAILABLE,
        SERVER_KEEP_ALIVE,
        RESPONSE_INFORMATION,
        SERVER_REFERENCE,
        AUTHENTICATION_METHOD,
        AUTHENTICATION_DATA,
    }
)
_PUBLISH_PROPERTIES = frozenset(
    {
        PAYLOAD_FORMAT_INDICATOR,
        MESSAGE_EXPIRY_INTERVAL,
        TOPIC_ALIAS,
        RESPONSE_TOPIC,
        CORRELATION_DATA,
        USER_PROPERTY,
        SUBSCRIPTION_IDENTIFIER,
        CONTENT_TYPE,
    }
)
_ACK_PROPERTIES = frozenset({REASON_STRING, USER_PROPERTY})
_SUBSCRIBE_PROPERTIES = frozenset({SUBSCRIPTION_IDENTIFIER, USER_PROPERTY})
_UNSUBSCRIBE_PROPERTIES = frozenset({USER_PROPERTY})
_DISCONNECT_PROPERTIES = frozenset(
    {SESSION_EXPIRY_INTERVAL, REASON_STRING, USER_PROPERTY, SERVER_REFERENCE}
)
_AUTH_PROPERTIES = frozenset(
    {AUTHENTICATION_METHOD, AUTHENTICATION_DATA, REASON_STRING, USER_PROPERTY}
)
_REPEATABLE = frozenset({USER_PROPERTY})
_PUBLISH_REPEATABLE = frozenset({USER_PROPERTY, SUBSCRIPTION_IDENTIFIER})


# ---------------------------------------------------------------------------------------------
# Decoding


def _decode_utf8(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")  # strict: refuses surrogates and overlong forms as the spec asks
    except UnicodeDecodeError as exc:
        raise MalformedPacket(f"invalid UTF-8 string: {exc.reason}") from None
    if "\x00" in text:
        raise MalformedPacket("UTF-8 string contains U+0000")
    return text


def _preview(text: str, length: int = 40) -> str:
    """The start of a client's string, quoted, for an error message: a reason string must
    fit in a packet, and need not carry the client's 64 KiB back to it."""
    return repr(text) if len(text) <= length else repr(text[:length]) + "…"


class _Cursor:
    """Reads the fields of one packet body, ``data[pos:end]``, refusing to run past its end."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data = data
        self.pos = pos
        self.end = end

    def take(self, n: int) -> int:
        start = self.pos
        if start + n > self.end:
            raise MalformedPacket("packet ends in the middle of a field")
        self.pos = start + n
        return start

    def left(self) -> int:
        return self.end - self.pos

    def u8(self) -> int:
        return self.data[self.take(1)]

    def u16(self) -> int:
        i = self.take(2)
        return self.data[i] << 8 | self.data[i + 1]

    def u32(self) -> int:
        i = self.take(4)
        return int.from_bytes(self.data[i : i + 4], "big")

    def varint(self) -> int:
        value = 0
        for shift in (0, 7, 14, 21):
            byte = self.u8()
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
        raise MalformedPacket("variable byte integer is longer than 4 bytes")

    def binary(self) -> bytes:
        n = self.u16()
        i = self.take(n)
        return self.data[i : i + n]

    def string(self) -> str:
        return _decode_utf8(self.binary())

    def rest(self) -> bytes:
        start, self.pos = self.pos, self.end
        return self.data[start : self.end]

    def packet_id(self) -> int:
        packet_id = self.u16()
        if packet_id == 0:
            raise MalformedPacket("packet identifier 0", PROTOCOL_ERROR)
        return packet_id

    def done(self, what: str) -> None:
        if self.pos != self.end:
            raise MalformedPacket(f"{what} has {self.end - self.pos} unused bytes at its end")


def _read_value(cur: _Cursor, kind: int) -> Any:
    if kind == _BYTE:
        return cur.u8()
    if kind == _TWO:
        return cur.u16()
    if kind == _FOUR:
        return cur.u32()
    if kind == _VARINT:
        return cur.varint()
    if kind == _STRING:
        return cur.string()
    if kind == _BINARY:
        return cur.binary()
    return (cur.string(), cur.string())  # _PAIR


def _check_value(ident: int, value: Any) -> None:
    if ident in _FLAG_PROPERTIES and value > 1:
        raise MalformedPacket(f"property 0x{ident:02X} must be 0 or 1, not {value}", PROTOCOL_ERROR)
    if ident in _NONZERO_PROPERTIES and value == 0:
        raise MalformedPacket(f"property 0x{ident:02X} must not be 0", PROTOCOL_ERROR)


def _read_properties(
    cur: _Cursor, allowed: frozenset[int], what: str, repeatable: frozenset[int] = _REPEATABLE
) -> dict[int, Any]:
    length = cur.varint()
    start = cur.take(length)
    # A cursor of its own so that no property can reach into the fields after the block.
    block = _Cursor(cur.data, start, start + length)
    properties: dict[int, Any] = {}
    while block.left():
        ident = block.varint()
        kind = _KINDS.get(ident)
        if kind is None:
            raise MalformedPacket(f"unknown property 0x{ident:02X} in {what}")
        if ident not in allowed:
            raise MalformedPacket(f"property 0x{ident:02X} is not allowed in {what}")
        value = _read_value(block, kind)
        _check_value(ident, value)
        if ident in repeatable:
            properties.setdefault(ident, []).append(value)
        elif ident in properties:
            raise MalformedPacket(f"property 0x{ident:02X} appears twice in {what}", PROTOCOL_ERROR)
        else:
            properties[ident] = value
    return properties


def _parse_publish(flags: int, data: bytes, pos: int, end: int, level: int) -> Publish:
    # The hot path: indexes and slices the buffer directly instead of going through a _Cursor.
    topic_end = pos + 2
    if topic_end > end:
        raise MalformedPacket("PUBLISH ends before its topic")
    topic_end += data[pos] << 8 | data[pos + 1]
    if topic_end > end:
        raise MalformedPacket("PUBLISH ends in the middle of its topic")
    topic = _decode_utf8(data[pos + 2 : topic_end])
    pos = topic_end
    qos = (flags >> 1) & 3
    packet_id = None
    if qos:
        if pos + 2 > end:
            raise MalformedPacket("PUBLISH ends before its packet identifier")
        packet_id = data[pos] << 8 | data[pos + 1]
        if packet_id == 0:
            raise MalformedPacket("packet identifier 0", PROTOCOL_ERROR)
        pos += 2
    properties: dict[int, Any] = {}
    if level == V5:
        if pos < end and data[pos] == 0:  # the usual empty property block
            pos += 1
        else:
            cur = _Cursor(data, pos, end)
            properties = _read_properties(cur, _PUBLISH_PROPERTIES, "PUBLISH", _PUBLISH_REPEATABLE)
            pos = cur.pos
    if "+" in topic or "#" in topic:
        raise MalformedPacket(f"wildcard in topic name {_preview(topic)}", PROTOCOL_ERROR)
    if not topic and TOPIC_ALIAS not in properties:
        raise MalformedPacket("empty topic name", PROTOCOL_ERROR)
    retain = bool(flags & 1)
    return Publish(topic, data[pos:end], qos, packet_id, retain, bool(flags & 8), properties)


def _parse_connect(cur: _Cursor) -> Connect:
    name = cur.string()
    level = cur.u8()
    if name == "MQIsdp" and level == 3:
        return _unsupported_connect(level)
    if name != "MQTT":
        raise MalformedPacket(f"unknown protocol {_preview(name)} level {level}")
    if level not in (V311, V5):
        return _unsupported_connect(level)
    flags = cur.u8()
    if flags & 0x01:
        raise MalformedPacket("reserved CONNECT flag is set")
    will = bool(flags & 0x04)
    will_qos = (flags >> 3) & 3
    will_retain = bool(flags & 0x20)
    if will_qos == 3:
        raise MalformedPacket("will QoS 3")
    if not will and (will_qos or will_retain):
        raise MalformedPacket("will QoS or retain set without a will")
    has_username = bool(flags & 0x80)
    has_password = bool(flags & 0x40)
    if level == V311 and has_password and not has_username:
        raise MalformedPacket("password without a user name")
    keepalive = cur.u16()
    properties = _read_properties(cur, _CONNECT_PROPERTIES, "CONNECT") if level == V5 else {}
    client_id = cur.string()
    will_topic = will_payload = None
    if will:
        if level == V5:
            _read_properties(cur, _WILL_PROPERTIES, "will")  # checked, then not kept
        will_topic = cur.string()
        will_payload = cur.binary()
    username = cur.string() if has_username else None
    password = cur.binary() if has_password else None
    cur.done("CONNECT")
    return Connect(
        level,
        client_id,
        bool(flags & 0x02),
        keepalive,
        username,
        password,
        properties,
        will_topic,
        will_payload,
        will_qos,
        will_retain,
    )


def _unsupported_connect(level: int) -> Connect:
    # The rest of the packet follows some other spec: the server only needs the level to refuse.
    return Connect(level, "", False, 0, None, None, {})


def _parse_connack(cur: _Cursor, level: int) -> ConnAck:
    flags = cur.u8()
    if flags & 0xFE:
        raise MalformedPacket("reserved CONNACK flags are set")
    reason_code = cur.u8()
    # A 3.1.1-only server answers a v5 CONNECT with a 3.1.1 CONNACK: no property block.
    properties = {}
    if level == V5 and cur.left():
        properties = _read_properties(cur, _CONNACK_PROPERTIES, "CONNACK")
    cur.done("CONNACK")
    return ConnAck(bool(flags & 1), reason_code, properties)


def _parse_puback(cur: _Cursor, level: int) -> PubAck:
    packet_id = cur.u16()
    reason_code, properties = _optional_reason(cur, level, "PUBACK", _ACK_PROPERTIES)
    return PubAck(packet_id, reason_code, properties)


def _optional_reason(
    cur: _Cursor, level: int, what: str, allowed: frozenset[int]
) -> tuple[int, dict[int, Any]]:
    """Reason code and properties that MQTT 5 lets a sender leave out when they are 0 and empty."""
    reason_code = 0
    properties: dict[int, Any] = {}
    if level == V5 and cur.left():
        reason_code = cur.u8()
        if cur.left():
            properties = _read_properties(cur, allowed, what)
    cur.done(what)
    return reason_code, properties


def _parse_subscribe(cur: _Cursor, level: int) -> Subscribe:
    packet_id = cur.packet_id()
    properties = {}
    if level == V5:
        properties = _read_properties(cur, _SUBSCRIBE_PROPERTIES, "SUBSCRIBE")
    filters = []
    while cur.left():
        topic_filter = cur.string()
        filters.append((topic_filter, _subscription_qos(cur.u8(), level)))
    if not filters:
        raise MalformedPacket("SUBSCRIBE without topic filters", PROTOCOL_ERROR)
    return Subscribe(packet_id, filters, properties)


def _subscription_qos(options: int, level: int) -> int:
    qos = options & 0x03
    if level == V311:
        if options & 0xFC or qos == 3:
            raise MalformedPacket(f"bad SUBSCRIBE options 0x{options:02X}")
        return qos
    if options & 0xC0:
        raise MalformedPacket(f"reserved SUBSCRIBE option bits set in 0x{options:02X}")
    if qos == 3 or options & 0x30 == 0x30:
        raise MalformedPacket(f"QoS or retain handling 3 in 0x{options:02X}", PROTOCOL_ERROR)
    return qos


def _parse_suback(cur: _Cursor, level: int) -> SubAck:
    packet_id = cur.u16()
    properties = _read_properties(cur, _ACK_PROPERTIES, "SUBACK") if level == V5 else {}
    return SubAck(packet_id, list(cur.rest()), properties)


def _parse_unsubscribe(cur: _Cursor, level: int) -> Unsubscribe:
    packet_id = cur.packet_id()
    properties = {}
    if level == V5:
        properties = _read_properties(cur, _UNSUBSCRIBE_PROPERTIES, "UNSUBSCRIBE")
    filters = []
    while cur.left():
        filters.append(cur.string())
    if not filters:
        raise MalformedPacket("UNSUBSCRIBE without topic filters", PROTOCOL_ERROR)
    return Unsubscribe(packet_id, filters, properties)


def _parse_unsuback(cur: _Cursor, level: int) -> UnsubAck:
    packet_id = cur.u16()
    if level != V5:
        cur.done("UNSUBACK")
        return UnsubAck(packet_id, [])
    properties = _read_properties(cur, _ACK_PROPERTIES, "UNSUBACK")
    return UnsubAck(packet_id, list(cur.rest()), properties)


def _parse_pingreq(cur: _Cursor, level: int) -> PingReq:
    cur.done("PINGREQ")
    return PingReq()


def _parse_pingresp(cur: _Cursor, level: int) -> PingResp:
    cur.done("PINGRESP")
    return PingResp()


def _parse_disconnect(cur: _Cursor, level: int) -> Disconnect:
    reason_code, properties = _optional_reason(cur, level, "DISCONNECT", _DISCONNECT_PROPERTIES)
    return Disconnect(reason_code, properties)


def _parse_auth(cur: _Cursor, level: int) -> Auth:
    reason_code, properties = _optional_reason(cur, level, "AUTH", _AUTH_PROPERTIES)
    return Auth(reason_code, properties)


_PARSERS: dict[int, Callable[[_Cursor, int], Packet]] = {
    _CONNACK: _parse_connack,
    _PUBACK: _parse_puback,
    _SUBSCRIBE: _parse_subscribe,
    _SUBACK: _parse_suback,
    _UNSUBSCRIBE: _parse_unsubscribe,
    _UNSUBACK: _parse_unsuback,
    _PINGREQ: _parse_pingreq,
    _PINGRESP: _parse_pingresp,
    _DISCONNECT: _parse_disconnect,
    _AUTH: _parse_auth,
}


def _remaining_length(data: bytes, pos: int, end: int) -> tuple[int, int] | None:
    """``(body start, body length)`` of the packet whose length field starts at ``pos``, or None
    while the field is still incomplete. Non-minimal encodings are accepted."""
    length = 0
    for shift in (0, 7, 14, 21):
        if pos >= end:
            return None
        byte = data[pos]
        pos += 1
        length |= (byte & 0x7F) << shift
        if byte < 0x80:
            return pos, length
    raise MalformedPacket("remaining length is longer than 4 bytes")


class PacketReader:
    """Incremental parser: feed bytes as they arrive, get whole packets out.

    ``protocol_level`` decides how packets are parsed (MQTT 5 ones carry reason codes and
    properties). It starts at `V311`; a CONNECT sets it to the level it asks for, and a client
    sets it itself. A second CONNECT is a protocol error.
    """

    __slots__ = ("_buf", "_connected", "_need", "max_packet_bytes", "protocol_level")

    def __init__(self, *, max_packet_bytes: int) -> None:
        self.max_packet_bytes = max_packet_bytes
        self.protocol_level: int = V311
        self._connected = False
        # Bytes of an incomplete packet, and how many the whole packet needs (0: not known yet).
        self._buf = bytearray()
        self._need = 0

    def feed(self, data: bytes) -> list[Packet]:
        """Every packet completed by ``data``, in order; raises `MalformedPacket`."""
        buf = self._buf
        if buf:
            buf += data
            if len(buf) < self._need:
                return []  # a large packet still arriving: no copy, no parse
            data = bytes(buf)
            buf.clear()
        elif type(data) is not bytes:
            data = bytes(data)
        packets: list[Packet] = []
        pos = 0
        end = len(data)
        while pos < end:
            first = data[pos]
            self._check_fixed_header(first)
            header = _remaining_length(data, pos + 1, end)
            if header is None:
                self._need = 0
                break
            body, length = header
            total = body - pos + length
            if total > self.max_packet_bytes:
                raise MalformedPacket(
                    f"packet of {total} bytes exceeds the maximum of {self.max_packet_bytes}",
                    PACKET_TOO_LARGE,
                )
            if body + length > end:
                self._need = total
                break
            packets.append(self._parse(first, data, body, body + length))
            pos = body + length
        if pos < end:
            buf += memoryview(data)[pos:]
        return packets

    def _check_fixed_header(self, first: int) -> None:
        """Refuses a bad first byte before the rest of the packet arrives."""
        kind = first >> 4
        flags = first & 0x0F
        if kind == _PUBLISH:
            qos = (flags >> 1) & 3
            if qos == 3:
                raise MalformedPacket("PUBLISH with QoS 3")
            if qos == 2:
                raise MalformedPacket("QoS 2 is not supported", QOS_NOT_SUPPORTED)
            if qos == 0 and flags & 0x08:
                raise MalformedPacket("PUBLISH with QoS 0 and DUP set")
            return
        if kind == 0 or (kind == _AUTH and self.protocol_level != V5):
            raise MalformedPacket(f"reserved packet type {kind}")
        if flags != _REQUIRED_FLAGS.get(kind, 0):
            raise MalformedPacket(f"bad fixed header flags 0x{flags:X} for packet type {kind}")
        if kind in (_PUBREC, _PUBREL, _PUBCOMP):
            raise MalformedPacket("QoS 2 is not supported", QOS_NOT_SUPPORTED)
        if kind == _CONNECT and self._connected:
            raise MalformedPacket("second CONNECT", PROTOCOL_ERROR)

    def _parse(self, first: int, data: bytes, start: int, end: int) -> Packet:
        kind = first >> 4
        if kind == _PUBLISH:
            return _parse_publish(first & 0x0F, data, start, end, self.protocol_level)
        cur = _Cursor(data, start, end)
        if kind != _CONNECT:
            return _PARSERS[kind](cur, self.protocol_level)
        connect = _parse_connect(cur)
        self._connected = True
        if connect.protocol_level in (V311, V5):
            self.protocol_level = connect.protocol_level
        return connect


# ---------------------------------------------------------------------------------------------
# Encoding

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


def _varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    if n > MAX_REMAINING_LENGTH:
        raise ValueError(f"{n} does not fit in a variable byte integer")
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _binary(data: bytes) -> bytes:
    return _U16.pack(len(data)) + data  # struct.error past 65535 bytes


def _string(text: str) -> bytes:
    return _binary(text.encode())


def _packet(first: int, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return bytes((first,)) + _varint(len(body)) + body


def _encode_value(kind: int, value: Any) -> bytes:
    if kind == _BYTE:
        return bytes((value,))
    if kind == _TWO:
        return _U16.pack(value)
    if kind == _FOUR:
        return _U32.pack(value)
    if kind == _VARINT:
        return _varint(value)
    if kind == _STRING:
        return _string(value)
    if kind == _BINARY:
        return _binary(value)
    name, text = value  # _PAIR
    return _string(name) + _string(text)


def _properties(properties: dict[int, Any] | None) -> bytes:
    """A property block, length included; lists are written as repeated properties."""
    parts: list[bytes] = []
    for ident, value in (properties or {}).items():
        kind = _KINDS[ident]
        values = value if isinstance(value, list) else [value]
        parts.extend(_varint(ident) + _encode_value(kind, item) for item in values)
    block = b"".join(parts)
    return _varint(len(block)) + block


def _check_level(level: int, properties: dict[int, Any] | None = None) -> None:
    if level not in (V311, V5):
        raise ValueError(f"protocol level must be {V311} or {V5}, not {level}")
    if properties and level != V5:
        raise ValueError("properties need MQTT 5")


def _reason_string(reason_string: str | None) -> dict[int, Any] | None:
    return None if reason_string is None else {REASON_STRING: reason_string}


def encode_connect(
    *,
    client_id: str,
    username: str | None,
    password: bytes | None = None,
    keepalive: int = 60,
    level: int = V5,
    clean_start: bool = True,
    properties: dict[int, Any] | None = None,
) -> bytes:
    _check_level(level, properties)
    flags = (
        (0x80 if username is not None else 0)
        | (0x40 if password is not None else 0)
        | (0x02 if clean_start else 0)
    )
    return _packet(
        _CONNECT << 4,
        _string("MQTT"),
        bytes((level, flags)),
        _U16.pack(keepalive),
        _properties(properties) if level == V5 else b"",
        _string(client_id),
        _string(username) if username is not None else b"",
        _binary(password) if password is not None else b"",
    )


def encode_connack(
    *,
    level: int,
    reason_code: int = 0,
    session_present: bool = False,
    properties: dict[int, Any] | None = None,
) -> bytes:
    _check_level(level, properties)
    return _packet(
        _CONNACK << 4,
        bytes((int(session_present), reason_code)),
        _properties(properties) if level == V5 else b"",
    )


def encode_publish(
    topic: str,
    payload: bytes,
    *,
    level: int,
    qos: int = 0,
    packet_id: int | None = None,
    retain: bool = False,
    dup: bool = False,
    properties: dict[int, Any] | None = None,
) -> bytes:
    _check_level(level, properties)
    if qos not in (0, 1, 2):
        raise ValueError(f"QoS {qos}")
    if (packet_id is None) != (qos == 0):
        raise ValueError("a packet identifier is needed for QoS 1 and 2, and only for them")
    first = _PUBLISH << 4 | dup << 3 | qos << 1 | retain
    return _packet(
        first,
        _string(topic),
        _U16.pack(packet_id) if packet_id is not None else b"",
        (_properties(properties) if properties else b"\x00") if level == V5 else b"",
        payload,
    )


def encode_puback(
    packet_id: int, *, level: int, reason_code: int = 0, reason_string: str | None = None
) -> bytes:
    _check_level(level)
    if level == V311 or (reason_code == 0 and reason_string is None):
        return _packet(_PUBACK << 4, _U16.pack(packet_id))
    return _packet(
        _PUBACK << 4,
        _U16.pack(packet_id),
        bytes((reason_code,)),
        _properties(_reason_string(reason_string)),
    )


def encode_subscribe(packet_id: int, filters: list[tuple[str, int]], *, level: int) -> bytes:
    _check_level(level)
    # The options byte is the maximum QoS alone: no No Local, Retain As Published 0, handling 0.
    entries = [_string(topic_filter) + bytes((qos,)) for topic_filter, qos in filters]
    return _packet(
        _SUBSCRIBE << 4 | 0b0010,
        _U16.pack(packet_id),
        b"\x00" if level == V5 else b"",
        *entries,
    )


def encode_suback(packet_id: int, reason_codes: list[int], *, level: int) -> bytes:
    _check_level(level)
    return _packet(
        _SUBACK << 4, _U16.pack(packet_id), b"\x00" if level == V5 else b"", bytes(reason_codes)
    )


def encode_unsubscribe(packet_id: int, filters: list[str], *, level: int) -> bytes:
    _check_level(level)
    return _packet(
        _UNSUBSCRIBE << 4 | 0b0010,
        _U16.pack(packet_id),
        b"\x00" if level == V5 else b"",
        *(_string(topic_filter) for topic_filter in filters),
    )


def encode_unsuback(packet_id: int, reason_codes: list[int], *, level: int) -> bytes:
    _check_level(level)
    if level == V311:
        return _packet(_UNSUBACK << 4, _U16.pack(packet_id))
    return _packet(_UNSUBACK << 4, _U16.pack(packet_id), b"\x00", bytes(reason_codes))


def encode_pingreq() -> bytes:
    return b"\xc0\x00"


def encode_pingresp() -> bytes:
    return b"\xd0\x00"


def encode_disconnect(
    *, level: int, reason_code: int = 0, reason_string: str | None = None
) -> bytes:
    _check_level(level)
    if level == V311 or (reason_code == 0 and reason_string is None):
        return b"\xe0\x00"
    if reason_string is None:
        return _packet(_DISCONNECT << 4, bytes((reason_code,)))  # properties may be left out
    return _packet(
        _DISCONNECT << 4, bytes((reason_code,)), _properties(_reason_string(reason_string))
    )
