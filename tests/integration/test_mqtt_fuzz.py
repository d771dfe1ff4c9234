"""Fuzzing the MQTT gateway (`hub gateway`, a real process): malformed, truncated and
out-of-order packets, hand-written and drawn by hypothesis, each on a connection of its own.

Every case ends with the gateway closing that connection within a bound: at once after a broken
packet (MQTT 5, once connected: a DISCONNECT with the codec's reason code first; MQTT 3.1.1 and
anything before a CONNACK: a plain close, which is all the specs ask), and after the connect
timeout for a CONNECT that never completes. A well-behaved device connected at the start keeps
being served all along (a PINGRESP after every case, a stored QoS 1 reading and its PUBACK
every `PUBLISH_EVERY_S`); at the end the process is alive, holds no more sockets than at the
start, and has logged no error. Hypothesis runs derandomized without an example database, so
CI sees the same examples on every run.

What this file found, each now a case of its own: a reason string too long to encode (an
exception in the middle of reading), a CONNACK of MQTT 5's shape with 3.1.1's code for a later
protocol version, a CONNECT trickled in that held its connection for ever, a client not reading
its answers that the gateway buffered for without bound and never let go of, and reason strings
and replies larger than the client's Maximum Packet Size.
"""

from __future__ import annotations

import asyncio
import os
import select
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from hub.settings import get_settings
from iot_ingest.mqtt import packets as p
from iot_ingest.mqtt.client import MqttClient
from tests.integration.helpers import GatewayProcess, register_device
from tests.mqtt_bytes import frame, varint

pytestmark = pytest.mark.integration
HOST = "127.0.0.1"
TELEMETRY = "v1/devices/me/telemetry"
MAX_PACKET_BYTES = get_settings().mqtt_max_packet_bytes
CLOSE_WITHIN_S = 5.0  # a broken packet or the end of the stream closes the connection at once
# A CONNECT must be whole within 1.5 × the gateway's 10 s connect timeout (swept every second).
CONNECT_TIMEOUT_S = 15.0
CONNECT_DEADLINE_S = CONNECT_TIMEOUT_S + 5.0
PUBLISH_EVERY_S = 0.15  # the bystander's stored readings stay under the device rate (10/s)
# Long enough that a CONNECT's remaining length takes two bytes, so cuts fall inside it too.
CLIENT_ID = "fuzz-" + "x" * 120
FUZZ = settings(
    max_examples=500,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# Bytes on the wire -------------------------------------------------------------------------


def field(raw: bytes | str) -> bytes:
    """A length-prefixed string or binary field, its bytes as given (valid UTF-8 or not)."""
    data = raw.encode() if isinstance(raw, str) else raw
    return len(data).to_bytes(2, "big") + data


def connect_body(
    token: str,
    level: int,
    *,
    name: bytes = b"MQTT",
    flags: int = 0x82,  # user name, clean start
    properties: bytes = b"",
    client_id: bytes | str = CLIENT_ID,
) -> bytes:
    block = varint(len(properties)) + properties if level == p.V5 else b""
    return (
        field(name)
        + bytes((level, flags))
        + b"\x00\x3c"  # keep-alive 60 s
        + block
        + field(client_id)
        + field(token)
    )


def connect(token: str, level: int, **options: Any) -> bytes:
    return frame(0x10, connect_body(token, level, **options))


def publish(
    level: int,
    topic: bytes | str = TELEMETRY,
    *,
    first: int = 0x30,
    packet_id: int = 1,
    properties: bytes = b"",
    payload: bytes = b'{"water_level_m": 1}',
) -> bytes:
    """A PUBLISH as given: ``first`` holds the type and flags, a packet id when they ask QoS > 0."""
    qos = (first >> 1) & 3
    body = field(topic) + (packet_id.to_bytes(2, "big") if qos else b"")
    if level == p.V5:
        body += varint(len(properties)) + properties
    return frame(first, body + payload)


def parse(data: bytes, level: int) -> list[p.Packet]:
    """What the gateway sent, as a client reads it (raises if the gateway broke the protocol)."""
    reader = p.PacketReader(max_packet_bytes=1 << 24)
    reader.protocol_level = level
    return reader.feed(data)


# One connection ----------------------------------------------------------------------------


@dataclass
class Answer:
    data: bytes  # all the gateway sent after the CONNACK (or all, without a handshake)
    closed: bool  # whether it closed the connection within the bound
    seconds: float  # how long it took

    def quiet(self) -> bool:
        return self.closed and self.data == b""


async def exchange(
    port: int,
    data: bytes,
    *,
    handshake: bytes | None = None,
    level: int = p.V311,
    eof: bool = False,
    within: float = CLOSE_WITHIN_S,
) -> Answer:
    """Open a connection, optionally CONNECT (``handshake``, which must be accepted), send
    ``data`` (then end the stream if ``eof``) and read until the gateway closes, or ``within``."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        if handshake is not None:
            writer.write(handshake)
            parser = p.PacketReader(max_packet_bytes=1 << 24)
            parser.protocol_level = level
            packets: list[p.Packet] = []
            async with asyncio.timeout(CLOSE_WITHIN_S):
                while not packets:
                    chunk = await reader.read(65536)
                    assert chunk, "the gateway closed instead of answering the CONNECT"
                    packets = parser.feed(chunk)
            assert isinstance(packets[0], p.ConnAck) and packets[0].reason_code == 0, packets
            assert len(packets) == 1, packets
        started = time.monotonic()
        writer.write(data)
        if eof:
            writer.write_eof()
        received = bytearray()
        closed = False
        try:
            async with asyncio.timeout(within):
                while chunk := await reader.read(65536):
                    received += chunk
            closed = True
        except TimeoutError:
            pass
        except ConnectionResetError:
            closed = True
        return Answer(bytes(received), closed, time.monotonic() - started)
    finally:
        writer.close()


def disconnected(answer: Answer, level: int, reason: int) -> bool:
    """Closed at once: MQTT 5 with one DISCONNECT carrying ``reason``, 3.1.1 without a word."""
    if level == p.V311:
        return answer.quiet()
    packets = parse(answer.data, p.V5)
    return (
        answer.closed
        and len(packets) == 1
        and isinstance(packets[0], p.Disconnect)
        and packets[0].reason_code == reason
    )


# The device that must keep being served ----------------------------------------------------


class Bystander:
    def __init__(self, client: MqttClient) -> None:
        self.client = client
        self.published_at = 0.0
        self.pubacks = 0
        self.pings = 0

    async def still_served(self) -> None:
        """A PINGRESP now, or when the device's rate allows, a reading stored and its PUBACK."""
        async with asyncio.timeout(CLOSE_WITHIN_S):
            if time.monotonic() - self.published_at < PUBLISH_EVERY_S:
                await self.client.ping()
                self.pings += 1
                return
            code = await self.client.publish(TELEMETRY, b'{"water_level_m": 1.2}', qos=1)
        assert code == 0, f"the bystander's reading was refused: 0x{code:02X}"
        self.published_at = time.monotonic()
        self.pubacks += 1


def open_descriptors(gateway: GatewayProcess) -> int:
    return len(os.listdir(f"/proc/{gateway.proc.pid}/fd"))


@dataclass
class Start:
    descriptors: int
    log_offset: int


@pytest.fixture(scope="module")
async def token(pool: Any) -> str:
    """The access token every fuzzing connection uses (one at a time)."""
    value = f"tok-fuzz-{uuid.uuid4().hex}"
    await register_device(pool, value)
    return value


@pytest.fixture(scope="module")
async def bystander(gateway: GatewayProcess, pool: Any) -> AsyncIterator[Bystander]:
    value = f"tok-bystander-{uuid.uuid4().hex}"
    await register_device(pool, value)
    client = await MqttClient.connect(HOST, gateway.port, username=value, level=p.V5)
    yield Bystander(client)
    await client.close()


@pytest.fixture(scope="module")
async def start(gateway: GatewayProcess, bystander: Bystander, token: str) -> Start:
    """The gateway's sockets and log before the fuzzing (its caches and pools warmed up)."""
    await bystander.still_served()
    warm = await exchange(gateway.port, b"", handshake=connect(token, p.V5), level=p.V5, eof=True)
    assert warm.quiet()
    return Start(open_descriptors(gateway), gateway.log.stat().st_size)


# Hand-written cases ------------------------------------------------------------------------

# Broken packets after an accepted CONNECT: (name, its bytes, the reason code of MQTT 5's
# DISCONNECT). MQTT 3.1.1 gets a plain close for each.
Build = Callable[[int, str], bytes]  # (protocol level, token) to bytes
AFTER_CONNECT: list[tuple[str, Build, int]] = [
    ("remaining length of 5 bytes", lambda level, token: b"\x30\xff\xff\xff\xff\x01", p.MALFORMED),
    ("over the packet limit", lambda level, token: b"\x30" + varint(MAX_PACKET_BYTES), 0x95),
    ("remaining length at its maximum", lambda level, token: b"\x30\xff\xff\xff\x7f", 0x95),
    ("reserved packet type 0", lambda level, token: b"\x00\x00", p.MALFORMED),
    ("PINGREQ with a flag set", lambda level, token: b"\xc1\x00", p.MALFORMED),
    ("PINGREQ with a body", lambda level, token: b"\xc0\x01\x00", p.MALFORMED),
    ("DISCONNECT with a flag set", lambda level, token: b"\xe2\x00", p.MALFORMED),
    (
        "SUBSCRIBE without its flags",
        lambda level, token: b"\x80" + p.encode_subscribe(1, [("a", 0)], level=level)[1:],
        p.MALFORMED,
    ),
    ("PUBLISH at QoS 3", lambda level, token: publish(level, first=0x36), p.MALFORMED),
    ("PUBLISH at QoS 0 with DUP", lambda level, token: publish(level, first=0x38), p.MALFORMED),
    ("PUBLISH at QoS 2", lambda level, token: publish(level, first=0x34), p.QOS_NOT_SUPPORTED),
    ("PUBREL", lambda level, token: b"\x62\x02\x00\x01", p.QOS_NOT_SUPPORTED),
    ("packet identifier 0", lambda level, token: publish(level, first=0x32, packet_id=0), 0x82),
    ("topic of invalid UTF-8", lambda level, token: publish(level, b"v1/\xff\xfe"), p.MALFORMED),
    ("topic with an overlong encoding", lambda level, token: publish(level, b"v1/\xc0\xaf"), 0x81),
    (
        "topic with a UTF-16 surrogate",
        lambda level, token: publish(level, b"v1/\xed\xa0\x80"),
        0x81,
    ),
    ("topic with U+0000", lambda level, token: publish(level, b"v1/devices/\x00"), p.MALFORMED),
    (
        "wildcard in a topic name",
        lambda level, token: publish(level, "v1/devices/+/telemetry"),
        0x82,
    ),
    # Regression: the codec's reason quoted the whole topic, too long for a DISCONNECT's reason
    # string; encoding it raised in the middle of data_received.
    (
        "wildcard in a 65,520-byte topic",
        lambda level, token: publish(level, "#" * 65_520, payload=b""),
        p.PROTOCOL_ERROR,
    ),
    ("empty topic name", lambda level, token: publish(level, b""), p.PROTOCOL_ERROR),
    (
        "PUBLISH shorter than its topic",
        lambda level, token: frame(0x30, b"\x00\x10abc"),
        p.MALFORMED,
    ),
    (
        "SUBSCRIBE without topic filters",
        lambda level, token: frame(0x82, b"\x00\x01" + (b"\x00" if level == p.V5 else b"")),
        p.PROTOCOL_ERROR,
    ),
    (
        "UNSUBSCRIBE without topic filters",
        lambda level, token: frame(0xA2, b"\x00\x01" + (b"\x00" if level == p.V5 else b"")),
        p.PROTOCOL_ERROR,
    ),
    (
        "SUBSCRIBE option bits reserved",
        lambda level, token: frame(
            0x82, b"\x00\x01" + (b"\x00" if level == p.V5 else b"") + field("a") + b"\xc0"
        ),
        p.MALFORMED,
    ),
    ("a second CONNECT", lambda level, token: connect(token, level), p.PROTOCOL_ERROR),
    (
        "a CONNACK from the device",
        lambda level, token: p.encode_connack(level=level, reason_code=0),
        p.PROTOCOL_ERROR,
    ),
    ("a SUBACK from the device", lambda level, token: p.encode_suback(1, [0], level=level), 0x82),
    ("a PINGRESP from the device", lambda level, token: b"\xd0\x00", p.PROTOCOL_ERROR),
]
AFTER_V5_CONNECT: list[tuple[str, bytes, int]] = [
    ("a property twice", publish(p.V5, properties=b"\x01\x00\x01\x01"), p.PROTOCOL_ERROR),
    ("an unknown property", publish(p.V5, properties=b"\x7f\x00"), p.MALFORMED),
    ("a CONNECT property in a PUBLISH", publish(p.V5, properties=b"\x11\x00\x00\x00\x01"), 0x81),
    ("a property block past the packet", publish(p.V5, properties=b"\x01", payload=b""), 0x81),
    (
        "a property block longer than its packet",
        frame(0x30, field(TELEMETRY) + varint(40) + b"\x01\x00"),
        p.MALFORMED,
    ),
    ("a flag property of 2", publish(p.V5, properties=b"\x01\x02"), p.PROTOCOL_ERROR),
    ("a user property cut short", publish(p.V5, properties=b"\x26\x00\x05ab"), p.MALFORMED),
    ("a topic alias", publish(p.V5, properties=b"\x23\x00\x01"), 0x94),
    ("a retained message", publish(p.V5, first=0x31), 0x9A),
    (
        "a subscription identifier",
        frame(0x82, b"\x00\x01\x02\x0b\x01" + field("v1/devices/me/attributes") + b"\x01"),
        0xA1,
    ),
    ("an AUTH packet", b"\xf0\x00", p.PROTOCOL_ERROR),
    ("a DISCONNECT with an unknown property", b"\xe0\x03\x00\x01\x7f", p.MALFORMED),
]


def after_connect_cases(token: str) -> list[tuple[str, int, bytes, int]]:
    cases = []
    for name, build, reason in AFTER_CONNECT:
        cases += [(name, level, build(level, token), reason) for level in (p.V311, p.V5)]
    cases += [(name, p.V5, data, reason) for name, data, reason in AFTER_V5_CONNECT]
    cases.append(("AUTH in MQTT 3.1.1", p.V311, b"\xf0\x00", p.MALFORMED))
    return cases


async def test_a_broken_packet_after_connect_closes_its_connection_with_the_reason(
    gateway: GatewayProcess, token: str, bystander: Bystander, start: Start
) -> None:
    wrong = []
    for name, level, data, reason in after_connect_cases(token):
        answer = await exchange(gateway.port, data, handshake=connect(token, level), level=level)
        if not disconnected(answer, level, reason):
            wrong.append((name, level, answer))
        await bystander.still_served()
    assert not wrong, "\n".join(f"{name} (level {level}): {a}" for name, level, a in wrong)


def before_connect_cases(token: str) -> list[tuple[str, bytes]]:
    """Packets that must close a connection quietly (no CONNACK) as its first bytes."""
    v5 = p.V5
    cases = [
        ("PUBLISH at QoS 0", publish(p.V311)),
        ("PUBLISH at QoS 1", publish(p.V311, first=0x32)),
        ("PINGREQ", b"\xc0\x00"),
        ("SUBSCRIBE", p.encode_subscribe(1, [("v1/devices/me/attributes", 1)], level=p.V311)),
        ("DISCONNECT", b"\xe0\x00"),
        ("AUTH", b"\xf0\x00"),
        ("a CONNACK", b"\x20\x02\x00\x00"),
        ("remaining length of 5 bytes", b"\x10\xff\xff\xff\xff\x01"),
        ("CONNECT over the packet limit", b"\x10" + varint(MAX_PACKET_BYTES)),
        ("an HTTP request", b"GET / HTTP/1.1\r\nHost: hub\r\n\r\n"),
        ("a TLS ClientHello", bytes.fromhex("16030100a5010000a10303") + bytes(32)),
        ("protocol name MQTX", connect(token, 4, name=b"MQTX")),
        ("protocol name mqtt", connect(token, 4, name=b"mqtt")),
        ("protocol name MQIsdp at level 4", connect(token, 4, name=b"MQIsdp")),
        ("an empty protocol name", connect(token, 4, name=b"")),
        ("a protocol name of invalid UTF-8", connect(token, 4, name=b"MQ\xffT")),
        ("the reserved CONNECT flag", connect(token, 4, flags=0x83)),
        ("will QoS 3", connect(token, 4, flags=0x9E)),
        ("will retain without a will", connect(token, 4, flags=0xA2)),
        ("will QoS without a will", connect(token, 5, flags=0x8A)),
        ("a password without a user name (3.1.1)", connect(token, 4, flags=0x42)),
        ("a client id of invalid UTF-8", connect(token, 4, client_id=b"dev\xc3")),
        ("a client id with U+0000", connect(token, 5, client_id=b"dev\x00")),
        ("a CONNECT property twice", connect(token, v5, properties=b"\x21\x00\x05\x21\x00\x05")),
        ("an unknown CONNECT property", connect(token, v5, properties=b"\x7f\x00")),
        ("a PUBLISH property in CONNECT", connect(token, v5, properties=b"\x23\x00\x01")),
        ("Receive Maximum 0", connect(token, v5, properties=b"\x21\x00\x00")),
        ("Maximum Packet Size 0", connect(token, v5, properties=b"\x27\x00\x00\x00\x00")),
        ("a CONNECT property block past the packet", connect(token, v5, properties=b"\x21")),
        ("a byte after the CONNECT", frame(0x10, connect_body(token, 4) + b"\x00")),
        ("a byte after the v5 CONNECT", frame(0x10, connect_body(token, 5) + b"\x00")),
    ]
    cases += [
        (f"CONNECT with header flags 0x{flags:X}", bytes((0x10 | flags,)) + connect(token, 4)[1:])
        for flags in range(1, 16)
    ]
    return cases


async def test_a_broken_first_packet_closes_its_connection_without_a_word(
    gateway: GatewayProcess, token: str, bystander: Bystander, start: Start
) -> None:
    wrong = []
    for name, data in before_connect_cases(token):
        answer = await exchange(gateway.port, data)
        if not answer.quiet():
            wrong.append((name, answer))
        await bystander.still_served()
    assert not wrong, "\n".join(f"{name}: {answer}" for name, answer in wrong)


@pytest.mark.parametrize(
    ("name", "level", "refusal"),
    [
        (b"MQIsdp", 3, b"\x20\x02\x00\x01"),  # MQTT 3.1: 3.1.1's "unacceptable protocol version"
        (b"MQTT", 3, b"\x20\x02\x00\x01"),
        (b"MQTT", 0, b"\x20\x02\x00\x01"),
        (b"MQTT", 6, b"\x20\x03\x00\x84\x00"),  # a later version: MQTT 5's 0x84, no properties
        (b"MQTT", 255, b"\x20\x03\x00\x84\x00"),
    ],
)
async def test_an_unsupported_protocol_version_is_refused_in_a_connack_it_can_read(
    gateway: GatewayProcess,
    token: str,
    bystander: Bystander,
    start: Start,
    name: bytes,
    level: int,
    refusal: bytes,
) -> None:
    body = field(name) + bytes((level, 0x82)) + b"\x00\x3c" + field("old") + field(token)
    answer = await exchange(gateway.port, frame(0x10, body))
    assert answer.closed and answer.data == refusal
    await bystander.still_served()


@pytest.mark.parametrize("level", [p.V311, p.V5])
async def test_a_connect_cut_short_at_any_byte_closes_at_once(
    gateway: GatewayProcess, token: str, bystander: Bystander, start: Start, level: int
) -> None:
    """Its header tells the truth about a body that stops early: malformed, closed at once."""
    body = connect_body(token, level)
    for cut in range(len(body)):
        answer = await exchange(gateway.port, frame(0x10, body[:cut]))
        assert answer.quiet(), (cut, answer)
    await bystander.still_served()


@pytest.mark.parametrize("level", [p.V311, p.V5])
async def test_a_connection_that_ends_inside_its_connect_closes_at_once(
    gateway: GatewayProcess, token: str, bystander: Bystander, start: Start, level: int
) -> None:
    """The client ends the stream (half-closes) at any byte of its CONNECT: closed, unanswered."""
    whole = connect(token, level)
    assert len(varint(len(whole) - 3)) == 2  # some cuts fall inside the remaining length
    for cut in range(1, len(whole)):
        answer = await exchange(gateway.port, whole[:cut], eof=True)
        assert answer.quiet(), (cut, answer)
    await bystander.still_served()


async def test_a_connect_that_never_completes_is_closed_after_the_connect_timeout(
    gateway: GatewayProcess, token: str, bystander: Bystander, start: Start
) -> None:
    """Every prefix of a CONNECT, then silence; and one trickled a byte every half second, which
    would take 20 minutes to complete: the connect timeout counts from the connection, so
    neither holds a socket past it (regression: every byte restarted it). The bystander is
    served meanwhile."""

    async def silent(prefix: bytes) -> Answer:
        return await exchange(gateway.port, prefix, within=CONNECT_DEADLINE_S)

    async def trickled() -> float:
        reader, writer = await asyncio.open_connection(HOST, gateway.port)
        started = time.monotonic()
        data = connect(token, p.V5, client_id="slow-" + "x" * 2_400)
        try:
            async with asyncio.timeout(CONNECT_DEADLINE_S):
                for byte in data:
                    writer.write(bytes((byte,)))
                    try:
                        assert await asyncio.wait_for(reader.read(1), 0.5) == b""
                        return time.monotonic() - started
                    except TimeoutError:
                        pass
                    except ConnectionResetError:
                        return time.monotonic() - started
        except TimeoutError:
            pass
        finally:
            writer.close()
        return float("inf")

    async def serve_bystander(until: asyncio.Future[Any]) -> int:
        checks = 0
        while not until.done():
            await bystander.still_served()
            checks += 1
            await asyncio.sleep(0.5)
        return checks

    prefixes = [connect(token, level)[:cut] for level in (p.V311, p.V5)
                for cut in range(1, len(connect(token, level)))]  # fmt: skip
    waiting = asyncio.gather(trickled(), *(silent(prefix) for prefix in prefixes))
    checks = await serve_bystander(waiting)
    trickle_s, *answers = await waiting
    assert checks >= CONNECT_TIMEOUT_S
    assert CONNECT_TIMEOUT_S - 1 <= trickle_s <= CONNECT_DEADLINE_S
    slow = [(len(prefix), a) for prefix, a in zip(prefixes, answers, strict=True) if not a.quiet()]
    assert not slow, f"{len(slow)} prefixes were not closed in time, e.g. {slow[:3]}"
    assert all(a.seconds >= CONNECT_TIMEOUT_S - 1 for a in answers)  # the timeout, nothing else


async def test_no_packet_is_larger_than_the_client_said_it_takes(
    gateway: GatewayProcess, token: str, bystander: Bystander, start: Start
) -> None:
    """MQTT 5's Maximum Packet Size (here 32 bytes, a little more than the CONNACK): reason
    strings are left out where they would not fit, and a reply that cannot fit is not sent."""
    handshake = connect(token, p.V5, properties=b"\x27\x00\x00\x00\x20")
    sent = [
        publish(p.V5, first=0x32, packet_id=1, payload=b"not json"),
        publish(
            p.V5,
            "v1/devices/me/rpc/request/1",
            first=0x32,
            packet_id=2,
            payload=b'{"method": "getSessionLimits"}',
        ),
    ]
    answer = await exchange(gateway.port, b"".join(sent), handshake=handshake, level=p.V5, eof=True)
    assert answer.closed and parse(answer.data, p.V5) == [p.PubAck(1, 0x99), p.PubAck(2)]
    answer = await exchange(gateway.port, b"\xc1\x00", handshake=handshake, level=p.V5)
    assert answer.closed and answer.data == b"\xe0\x01\x81"  # DISCONNECT 0x81, nothing more
    await bystander.still_served()


def push_without_reading(sock: socket.socket, *, limit: int, stall_s: float) -> int:
    """Send PINGREQs without reading the PINGRESPs until the peer has taken nothing for
    ``stall_s`` or ``limit`` bytes are sent; returns the bytes sent."""
    chunk = b"\xc0\x00" * 32_768
    sent = 0
    sock.setblocking(False)
    while sent < limit:
        _, writable, _ = select.select([], [sock], [], stall_s)
        if not writable:
            break
        try:
            sent += sock.send(chunk)
        except BlockingIOError:
            continue
    return sent


def tcp_state(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]  # tcpi_state


TCP_ESTABLISHED, TCP_CLOSE = 1, 7


async def test_a_device_that_stops_reading_is_neither_buffered_for_nor_kept(
    gateway: GatewayProcess, pool: Any, bystander: Bystander, start: Start
) -> None:
    """Regression: the gateway read whatever a client sent while its answers piled up unsent
    (a ping flood grew the process by the flood's size), and a close waited for them to be
    delivered, forever if the client never read. Now it stops reading a client that does not
    read, and drops it once its keep-alive passes, DISCONNECT delivered or not."""
    own = f"tok-{uuid.uuid4().hex}"
    await register_device(pool, own)
    sock = socket.create_connection((HOST, gateway.port))
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(p.encode_connect(client_id="", username=own, keepalive=1, level=p.V5))
        sock.settimeout(CLOSE_WITHIN_S)
        [connack] = parse(sock.recv(256), p.V5)
        assert isinstance(connack, p.ConnAck) and connack.reason_code == 0
        limit = 256 * 1024 * 1024
        sent = await asyncio.to_thread(push_without_reading, sock, limit=limit, stall_s=1.0)
        assert sent < 64 * 1024 * 1024, f"the gateway took {sent} bytes it could not answer"
        await bystander.still_served()
        deadline = time.monotonic() + 1.5 + 1 + 5 + CLOSE_WITHIN_S  # keep-alive, sweep, grace
        while tcp_state(sock) == TCP_ESTABLISHED:
            assert time.monotonic() < deadline, "the gateway kept a connection it had closed"
            await asyncio.sleep(0.2)
        assert tcp_state(sock) == TCP_CLOSE  # reset: what it could not deliver is dropped
    finally:
        sock.close()
    await bystander.still_served()


# Hypothesis --------------------------------------------------------------------------------

TOPICS = st.sampled_from(
    [
        TELEMETRY,
        "v1/devices/me/attributes",
        "v1/devices/me/attributes/request/1",
        "v1/devices/me/rpc/request/7",
        "v1/gateway/telemetry",
        "a/b",
    ]
) | st.text(max_size=12)
BODIES = st.sampled_from(
    [b'{"water_level_m": 1}', b'[{"ts": 1, "values": {"v": 1}}]', b'{"method":"x"}', b"{}"]
) | st.binary(max_size=40)
PROPERTIES = st.sampled_from(
    [b"", b"\x01\x01", b"\x02\x00\x00\x00\x3c", b"\x03\x00\x04json", b"\x26\x00\x01a\x00\x01b"]
)


@st.composite
def client_packet(draw: st.DrawFn, level: int) -> bytes:
    """One packet a client may send after CONNECT, well formed."""
    kind = draw(st.sampled_from(["publish", "subscribe", "unsubscribe", "ping", "puback"]))
    if kind == "publish":
        qos = draw(st.integers(0, 1))
        topic = draw(TOPICS).encode()
        properties = draw(PROPERTIES) if level == p.V5 else b""
        packet_id = draw(st.integers(1, 65_535))
        payload = draw(BODIES)
        return publish(level, topic, first=0x30 | qos << 1, packet_id=packet_id,
                       properties=properties, payload=payload)  # fmt: skip
    if kind == "subscribe":
        return p.encode_subscribe(draw(st.integers(1, 65_535)), [(draw(TOPICS), 1)], level=level)
    if kind == "unsubscribe":
        return p.encode_unsubscribe(draw(st.integers(1, 65_535)), [draw(TOPICS)], level=level)
    if kind == "puback":
        return p.encode_puback(draw(st.integers(1, 65_535)), level=level)
    return p.encode_pingreq()


@st.composite
def damaged(draw: st.DrawFn, packets: st.SearchStrategy[bytes]) -> bytes:
    """A few well-formed packets, then bytes flipped, set, cut out or put in."""
    data = bytearray(b"".join(draw(st.lists(packets, min_size=1, max_size=4))))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        how = draw(st.sampled_from(["flip", "set", "cut", "insert", "truncate"]))
        if how == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif how == "set":
            data[at] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0xFF, draw(st.integers(0, 255))]))
        elif how == "cut":
            del data[at : at + draw(st.integers(1, 8))]
        elif how == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[at:]
    return bytes(data)


def verdict(data: bytes, level: int, *, after: bytes | None) -> tuple[int | None, int]:
    """What the codec makes of ``data`` (``after`` a CONNECT, or as a connection's first
    bytes), fed byte by byte: the reason code of the first fault, or None, and the number of
    packets complete before it."""
    reader = p.PacketReader(max_packet_bytes=MAX_PACKET_BYTES)
    if after is not None:
        reader.feed(after)
    complete = 0
    for i in range(len(data)):
        try:
            complete += len(reader.feed(data[i : i + 1]))
        except p.MalformedPacket as exc:
            return exc.reason_code, complete
    return None, complete


def outcome(reason: int | None, complete: int) -> str:
    """The verdict as a hypothesis event, for ``--hypothesis-show-statistics``."""
    if complete:
        return "packets, then " + ("no fault" if reason is None else f"fault 0x{reason:02X}")
    return "first packet unfinished" if reason is None else f"fault 0x{reason:02X} in the first"


def well_behaved(data: bytes, level: int) -> None:
    """What the gateway sends a connected client: its answers, at most one DISCONNECT (MQTT 5
    only), last, with an error's reason code."""
    packets = parse(data, level)
    answers = (p.PubAck, p.SubAck, p.UnsubAck, p.PingResp, p.Publish, p.Disconnect)
    assert all(isinstance(packet, answers) for packet in packets), packets
    disconnects = [packet for packet in packets if isinstance(packet, p.Disconnect)]
    if level == p.V311:
        assert not disconnects
    elif disconnects:
        [disconnect] = disconnects
        assert packets[-1] is disconnect
        assert disconnect.reason_code >= 0x80 and disconnect.reason_code in p.REASON_NAMES


@FUZZ
@given(
    level=st.sampled_from([p.V311, p.V5]),
    data=st.data(),
)
async def test_any_bytes_after_a_connect_close_the_connection_and_nothing_else(
    gateway: GatewayProcess,
    token: str,
    bystander: Bystander,
    start: Start,
    level: int,
    data: st.DataObject,
) -> None:
    """Random bytes, or damaged packets, after an accepted CONNECT. When the codec refuses the
    first packet, the answer is exact (MQTT 5: DISCONNECT with its reason code; 3.1.1: a plain
    close) and comes without the client ending the stream; otherwise the client ends it, and the
    gateway, having answered only with well-formed packets, closes."""
    fuzz = data.draw(st.binary(min_size=1, max_size=300) | damaged(client_packet(level)))
    handshake = connect(token, level)
    reason, complete = verdict(fuzz, level, after=handshake)
    exact = reason is not None and complete == 0
    event(outcome(reason, complete))
    answer = await exchange(gateway.port, fuzz, handshake=handshake, level=level, eof=not exact)
    if exact:
        assert reason is not None and disconnected(answer, level, reason), answer
    elif complete == 0:
        assert answer.quiet(), answer  # a packet cut short by the end of the stream
    else:
        assert answer.closed, answer
        well_behaved(answer.data, level)
    await bystander.still_served()


@FUZZ
@given(level=st.sampled_from([p.V311, p.V5]), data=st.data())
async def test_a_damaged_connect_is_refused_or_closed_and_nothing_else(
    gateway: GatewayProcess,
    token: str,
    bystander: Bystander,
    start: Start,
    level: int,
    data: st.DataObject,
) -> None:
    """A CONNECT (with the right token or another) damaged as a connection's first bytes: the
    codec's refusals close quietly; what still parses as a CONNECT gets one CONNACK."""
    packet = st.builds(
        lambda user, properties: connect(user, level, properties=properties),
        st.sampled_from([token, "no-such-token", ""]),
        st.sampled_from([b"", b"\x21\x00\x0a", b"\x11\x00\x00\x00\x3c", b"\x15\x00\x01x"])
        if level == p.V5
        else st.just(b""),
    )
    fuzz = data.draw(damaged(packet))
    reason, complete = verdict(fuzz, level, after=None)
    event(outcome(reason, complete))
    if reason is not None and complete == 0:
        answer = await exchange(gateway.port, fuzz)
        assert answer.quiet(), answer
    else:
        answer = await exchange(gateway.port, fuzz, eof=True)
        assert answer.closed, answer
        if complete:
            first = answer.data[:1]
            assert first in (b"", b"\x20"), answer  # a CONNACK (or a close before deciding)
    await bystander.still_served()


# Last: the process, its sockets and its log ------------------------------------------------


async def test_after_all_that_the_gateway_lives_on_with_nothing_left_open(
    gateway: GatewayProcess, bystander: Bystander, start: Start
) -> None:
    await bystander.still_served()
    await asyncio.sleep(PUBLISH_EVERY_S)
    await bystander.still_served()
    assert bystander.pubacks >= 2 and not bystander.client.closed
    assert gateway.proc.poll() is None, "hub gateway exited"
    deadline = time.monotonic() + CLOSE_WITHIN_S
    while open_descriptors(gateway) > start.descriptors + 2:
        assert time.monotonic() < deadline, (
            f"{open_descriptors(gateway)} descriptors open, {start.descriptors} at the start"
        )
        await asyncio.sleep(0.2)
    with gateway.log.open("rb") as log:
        log.seek(start.log_offset)
        logged = log.read().decode(errors="replace")
    assert "Traceback" not in logged and " ERROR " not in logged, logged[-4000:]
    assert "mqtt session failed" not in logged, logged[-4000:]
