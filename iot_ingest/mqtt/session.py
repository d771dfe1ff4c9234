"""One device's (or gateway's) MQTT connection: an asyncio Protocol, not a task per client,
so twenty thousand idle connections cost a few kilobytes each.

Order is kept per connection: packets are handled one after another (reading pauses while a
handler waits for the database), and PUBACKs leave in the order their PUBLISHes came, each
once its readings are on Kafka. A broken packet closes this connection and no other.

A connection cannot hold the gateway's memory or sockets: its CONNECT must be whole within the
connect timeout of the connection being opened, however slowly its bytes trickle in; reading
pauses while what the hub sends it is not being read (so a client that sends without reading
the answers is not buffered for); and a closed connection whose last bytes the client does not
take within `CLOSE_GRACE_S` is dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from hub.bus import BusUnavailable
from iot_ingest.devices import Device
from iot_ingest.mqtt import packets as p
from iot_ingest.mqtt.handlers import UNSPECIFIED_ERROR, Outcome

if TYPE_CHECKING:
    from iot_ingest.mqtt.gateway import Gateway

log = logging.getLogger(__name__)

# CONNACK refusals in each protocol version. "guessing": the address presented too many unknown
# tokens (hub/guessing.py); 3.1.1 has no quota code, so it hears "not authorized".
REFUSED_V311 = {"protocol": 0x01, "empty": 0x04, "unknown": 0x05, "busy": 0x03, "auth": 0x05,
                "guessing": 0x05}  # fmt: skip
REFUSED_V5 = {"protocol": 0x84, "empty": 0x86, "unknown": 0x87, "busy": 0x97, "auth": 0x8C,
              "guessing": 0x97}  # fmt: skip
SERVER_UNAVAILABLE = 0x88
SERVER_SHUTTING_DOWN = 0x8B
KEEP_ALIVE_TIMEOUT = 0x8D
SESSION_TAKEN_OVER = 0x8E
RECEIVE_MAXIMUM_EXCEEDED = 0x93
TOPIC_ALIAS_INVALID = 0x94
MESSAGE_RATE_TOO_HIGH = 0x96
QUOTA_EXCEEDED = 0x97
RETAIN_NOT_SUPPORTED = 0x9A
PROTOCOL_ERROR = 0x82
SHARED_NOT_SUPPORTED = 0x9E
SUBSCRIPTION_IDS_NOT_SUPPORTED = 0xA1
# The reason codes a v5 CONNACK may carry (spec 3.2.2.2); a DISCONNECT-only one (shutting down,
# keep-alive timeout, taken over) before CONNACK is said with the nearest of these.
CONNACK_REFUSALS = frozenset(
    {0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
     0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F}
)  # fmt: skip
CLOSE_GRACE_S = 5.0  # how long a closed connection's unsent bytes wait for the client to read
# Reason strings say why; they do not carry the client's data back (a topic may be 64 KiB).
MAX_REASON_STRING = 120


@dataclass(slots=True)
class _Ack:
    packet_id: int
    outcome: Outcome | None = None


class Session(asyncio.Protocol):
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.reader = p.PacketReader(max_packet_bytes=gateway.max_packet_bytes)
        self.transport: asyncio.Transport | None = None
        self.level = p.V311
        self.device: Device | None = None
        self.keepalive_s = gateway.connect_timeout_s  # until CONNECT names its own
        self.last_seen = 0.0
        self.closed = False
        self._inbox: deque[Any] = deque()
        self._busy = False  # a handler is waiting for I/O; packets wait in the inbox
        self._acks: deque[_Ack] = deque()
        self._problem_info = True  # v5 Request Problem Information: reason strings allowed
        self._client_max_packet: int | None = None  # v5 Maximum Packet Size the client takes
        self._writing_paused = False  # the client is not reading what the hub sends

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.last_seen = self.gateway.clock()
        self.gateway.sessions.add(self)

    def data_received(self, data: bytes) -> None:
        if self.device is not None:  # before CONNACK the connect timeout runs from the accept
            self.last_seen = self.gateway.clock()
        try:
            self._inbox.extend(self.reader.feed(data))
        except p.MalformedPacket as exc:
            self.gateway.counters["malformed"] += 1
            self.disconnect(exc.reason_code, str(exc))
            return
        if not self._busy:
            self._pump()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.gateway.forget(self)

    def pause_writing(self) -> None:
        # What the hub sends piles up unread: read nothing more until the client catches up.
        self._writing_paused = True
        assert self.transport is not None
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._resume_reading()

    def _resume_reading(self) -> None:
        if not (self._busy or self._writing_paused or self.closed):
            assert self.transport is not None
            self.transport.resume_reading()

    # handling, one packet after another

    def _pump(self) -> None:
        while self._inbox and not self.closed:
            step = self._handle(self._inbox.popleft())
            if step is not None:
                self._busy = True
                assert self.transport is not None
                self.transport.pause_reading()
                asyncio.ensure_future(step).add_done_callback(self._resume)
                return

    def _resume(self, task: asyncio.Future[Any]) -> None:
        self._busy = False
        if task.cancelled() or self.closed:
            return
        if task.exception() is not None:
            log.warning("mqtt session failed: %r", task.exception())
            self.disconnect(UNSPECIFIED_ERROR, "the hub could not handle this message")
            return
        self._resume_reading()
        self._pump()

    def _handle(self, packet: Any) -> Any:
        """Handle one packet; return a coroutine when the next must wait for it."""
        if self.device is None:
            if isinstance(packet, p.Connect):
                return self._connect(packet)
            self.disconnect(PROTOCOL_ERROR, "the first packet must be CONNECT")
            return None
        if isinstance(packet, p.Publish):
            return self._publish(packet)
        if isinstance(packet, p.PingReq):
            self._write(p.encode_pingresp())
        elif isinstance(packet, p.Subscribe):
            # What the CONNACK said the hub does not do is refused as MQTT 5 says to.
            if p.SUBSCRIPTION_IDENTIFIER in packet.properties:
                self.disconnect(SUBSCRIPTION_IDS_NOT_SUPPORTED, "no subscription identifiers")
            elif any(topic.startswith("$share/") for topic, _ in packet.filters):
                self.disconnect(SHARED_NOT_SUPPORTED, "no shared subscriptions")
            else:
                # Topics the hub may publish to are answered whether subscribed or not; grant
                # up to QoS 1 (the hub's maximum).
                codes = [min(qos, 1) for _, qos in packet.filters]
                self._write(p.encode_suback(packet.packet_id, codes, level=self.level))
        elif isinstance(packet, p.Unsubscribe):
            codes = [0] * len(packet.filters)
            self._write(p.encode_unsuback(packet.packet_id, codes, level=self.level))
        elif isinstance(packet, p.Disconnect):
            self.close()
        elif isinstance(packet, p.PubAck):
            pass  # the hub publishes at QoS 0 only
        else:
            self.disconnect(PROTOCOL_ERROR, f"unexpected {type(packet).__name__} packet")
        return None

    async def _connect(self, connect: p.Connect) -> None:
        if connect.protocol_level not in (p.V311, p.V5):
            # A later version can read MQTT 5's CONNACK (0x84), an earlier one 3.1.1's (0x01).
            if connect.protocol_level > p.V5:
                self._refuse(p.V5, REFUSED_V5["protocol"])
            else:
                self._refuse(p.V311, REFUSED_V311["protocol"])
            return
        refused = REFUSED_V5 if connect.protocol_level == p.V5 else REFUSED_V311
        self.level = connect.protocol_level
        self._problem_info = connect.properties.get(p.REQUEST_PROBLEM_INFORMATION, 1) == 1
        self._client_max_packet = connect.properties.get(p.MAXIMUM_PACKET_SIZE)
        if p.AUTHENTICATION_METHOD in connect.properties:
            self._refuse(self.level, refused["auth"])
            return
        if not connect.username:
            self._refuse(self.level, refused["empty"])
            return
        peer = self._peer()
        if self.gateway.guessing.retry_after(peer) is not None:  # not even looked up
            self.gateway.counters["refused_guessing"] += 1
            self._refuse(self.level, refused["guessing"])
            return
        try:
            device = await self.gateway.tokens.resolve(self.gateway.pool, connect.username)
        except Exception:
            log.exception("token lookup failed")
            self._refuse(self.level, refused["busy"])
            return
        if device is None:
            self.gateway.counters["refused"] += 1
            self.gateway.guessing.failed(peer)
            self._refuse(self.level, refused["unknown"])
            return
        if self.closed:
            return
        if not self.gateway.admit(self, device):
            self._refuse(self.level, refused["busy"])
            return
        self.device = device
        self.keepalive_s = self.gateway.keepalive_for(connect.keepalive)
        self.last_seen = self.gateway.clock()
        self._write(p.encode_connack(level=self.level,
                                     properties=self._connack_properties(connect)))  # fmt: skip

    def _peer(self) -> str:
        """The client's IP address ("" when the transport has none)."""
        peername = self.transport.get_extra_info("peername") if self.transport else None
        return str(peername[0]) if isinstance(peername, tuple) and peername else ""

    def _connack_properties(self, connect: p.Connect) -> dict[int, Any] | None:
        if self.level != p.V5:
            return None
        gateway = self.gateway
        properties: dict[int, Any] = {
            p.RECEIVE_MAXIMUM: gateway.receive_maximum,
            p.MAXIMUM_QOS: 1,
            p.RETAIN_AVAILABLE: 0,
            p.MAXIMUM_PACKET_SIZE: gateway.max_packet_bytes,
            p.WILDCARD_SUBSCRIPTION_AVAILABLE: 1,
            p.SUBSCRIPTION_IDENTIFIER_AVAILABLE: 0,
            p.SHARED_SUBSCRIPTION_AVAILABLE: 0,
        }
        if self.keepalive_s != connect.keepalive:
            properties[p.SERVER_KEEP_ALIVE] = self.keepalive_s
        if not connect.client_id:
            properties[p.ASSIGNED_CLIENT_IDENTIFIER] = f"hub-{id(self):x}"
        return properties

    def _refuse(self, level: int, reason: int) -> None:
        self._write(p.encode_connack(level=level, reason_code=reason))
        self.close()

    def _publish(self, publish: p.Publish) -> Any:
        assert self.device is not None
        if publish.retain and self.level == p.V5:
            self.disconnect(RETAIN_NOT_SUPPORTED, "the hub keeps no retained messages")
            return None
        if p.TOPIC_ALIAS in publish.properties or not publish.topic:
            self.disconnect(TOPIC_ALIAS_INVALID, "the hub takes no topic aliases")
            return None
        ack = None
        if publish.qos == 1:
            assert publish.packet_id is not None
            if len(self._acks) >= self.gateway.receive_maximum:
                self.disconnect(RECEIVE_MAXIMUM_EXCEEDED, "more QoS 1 messages in flight than "
                                f"the {self.gateway.receive_maximum} allowed")  # fmt: skip
                return None
            ack = _Ack(publish.packet_id)
            self._acks.append(ack)
        self.gateway.counters["published"] += 1
        answer = self.gateway.handlers.handle(self.device, publish.topic, publish.payload,
                                              self.reply)  # fmt: skip
        if asyncio.iscoroutine(answer):
            return self._after(answer, ack)
        self._settle(answer, ack)
        return None

    async def _after(self, pending: Any, ack: _Ack | None) -> None:
        self._settle(await pending, ack)

    def _settle(self, answer: Outcome | asyncio.Future[None], ack: _Ack | None) -> None:
        if isinstance(answer, Outcome):
            self._complete(answer, ack)
        else:
            answer.add_done_callback(lambda stored: self._complete(_stored(stored), ack))

    def _complete(self, outcome: Outcome, ack: _Ack | None) -> None:
        if outcome.reason:
            self.gateway.counters["refused_messages"] += 1
        if self.closed:
            return
        if ack is None:
            if outcome.reason:  # QoS 0 has no PUBACK to carry the refusal: the connection does
                over_rate = outcome.reason == QUOTA_EXCEEDED
                reason = MESSAGE_RATE_TOO_HIGH if over_rate else outcome.reason
                self.disconnect(reason, outcome.text)
            return
        ack.outcome = outcome
        while self._acks and self._acks[0].outcome is not None:
            done = self._acks.popleft()
            assert done.outcome is not None
            if done.outcome.reason and self.level != p.V5:
                self.close()  # 3.1.1 has no refusing PUBACK: closing is the only signal
                return
            puback = partial(p.encode_puback, done.packet_id, level=self.level,
                             reason_code=done.outcome.reason)  # fmt: skip
            self._write_with_reason(puback, done.outcome.text)

    def reply(self, topic: str, payload: bytes) -> None:
        packet = p.encode_publish(topic, payload, level=self.level)
        if self._client_max_packet is None or len(packet) <= self._client_max_packet:
            self._write(packet)  # one the client cannot take is dropped, as MQTT 5 says

    def _write_with_reason(self, encode: Callable[..., bytes], text: str | None) -> None:
        """``encode(reason_string=…)`` with the reason string if the client asked for them and it
        fits: cut to `MAX_REASON_STRING`, left out where the client's Maximum Packet Size is
        too small for it."""
        if text is None or not self._problem_info:
            self._write(encode(reason_string=None))
            return
        if len(text) > MAX_REASON_STRING:
            text = text[: MAX_REASON_STRING - 1] + "…"
        packet = encode(reason_string=text)
        if self._client_max_packet is not None and len(packet) > self._client_max_packet:
            packet = encode(reason_string=None)
        self._write(packet)

    # closing

    def disconnect(self, reason: int, text: str | None = None) -> None:
        """Close, telling an MQTT 5 client why (3.1.1 has no server DISCONNECT)."""
        if self.closed:
            return
        if self.level == p.V5 and self.device is not None:
            disconnect = partial(p.encode_disconnect, level=p.V5, reason_code=reason)
            self._write_with_reason(disconnect, text)
        elif self.level == p.V5 and reason >= 0x80 and self.device is None:
            # Before CONNACK, a v5 refusal is a CONNACK with the reason.
            self._write(p.encode_connack(level=p.V5, reason_code=connack_reason(reason)))
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.transport is not None:
            self.transport.close()  # sends what is buffered first, however long that takes
            if self.transport.get_write_buffer_size():
                asyncio.get_running_loop().call_later(CLOSE_GRACE_S, self.transport.abort)

    def _write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)


def _stored(done: asyncio.Future[None]) -> Outcome:
    exc = done.exception()
    if exc is None:
        return Outcome()
    if isinstance(exc, BusUnavailable):
        return Outcome(UNSPECIFIED_ERROR, "the hub could not store it now; send it again")
    return Outcome(UNSPECIFIED_ERROR, "the hub failed to store it")


def connack_reason(reason: int) -> int:
    """``reason`` as a v5 CONNACK may say it."""
    if reason in CONNACK_REFUSALS:
        return reason
    return SERVER_UNAVAILABLE if reason == SERVER_SHUTTING_DOWN else UNSPECIFIED_ERROR
