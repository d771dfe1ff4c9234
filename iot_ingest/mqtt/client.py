"""A minimal asyncio MQTT client for benchmarks and the device simulator; not a general library.

One `MqttClient` is one device connection: CONNECT with the device's access token as user name,
then pipelined QoS 0/1 publishes, subscriptions and pings. It is lean so that one process can
hold ~10,000 of them: asyncio streams, one reader task each, no threads, no buffers of its own
beyond the packet parser's.

What it leaves out: QoS 2, will messages, retained publishes, topic aliases, reconnecting, and
keeping the connection alive. It never sends PINGREQ by itself: a caller that stays idle longer
than ``keepalive`` seconds must call `MqttClient.ping` or the server will drop the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from iot_ingest.mqtt.packets import (
    REASON_NAMES,
    RECEIVE_MAXIMUM,
    V5,
    ConnAck,
    Disconnect,
    MalformedPacket,
    Packet,
    PacketReader,
    PingResp,
    PubAck,
    Publish,
    SubAck,
    UnsubAck,
    encode_connect,
    encode_disconnect,
    encode_pingreq,
    encode_puback,
    encode_publish,
    encode_subscribe,
)

MAX_INCOMING_BYTES = 16 * 1024 * 1024  # the parser's buffer only grows as a packet arrives
_READ_SIZE = 64 * 1024
_CLOSE_TIMEOUT_S = 5.0
_PROTOCOL_ERROR = 0x82


class MqttError(Exception):
    """The server refused: ``reason_code`` is the CONNACK's (or the violation's) reason code."""

    def __init__(self, reason_code: int, message: str | None = None) -> None:
        name = REASON_NAMES.get(reason_code, "unknown reason")
        super().__init__(message or f"0x{reason_code:02X} {name}")
        self.reason_code = reason_code


class MqttClient:
    """One device connection: CONNECT with the access token as user name, pipelined QoS 1
    publishes.

    Attributes
    ----------
    connack
        The server's CONNACK (its properties hold the v5 limits the server announced).
    messages
        PUBLISH packets the server sent (e.g. RPC requests/responses), QoS 1 ones already
        acknowledged. Unbounded: a caller that subscribes must consume it.
    closed
        True once the connection is closed, by either side.
    disconnect_reason
        Reason code of the server's DISCONNECT, if it sent one.
    """

    # Slots, a lazy queue and a list for pings: ~4 KB less per client than the obvious way.
    __slots__ = (
        "_in_flight",
        "_messages",
        "_next_id",
        "_parser",
        "_pings",
        "_reader",
        "_task",
        "_waiting",
        "_writer",
        "closed",
        "connack",
        "disconnect_reason",
        "level",
    )

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        parser: PacketReader,
        connack: ConnAck,
    ) -> None:
        self.connack = connack
        self.level = parser.protocol_level
        self._messages: asyncio.Queue[Publish] | None = None
        self.closed = False
        self.disconnect_reason: int | None = None
        self._reader = reader
        self._writer = writer
        self._parser = parser
        # Acks by packet id; a future's result is None when the connection closed first.
        self._waiting: dict[int, asyncio.Future[Packet | None]] = {}
        self._pings: list[asyncio.Future[bool]] = []  # in PINGREQ order
        self._next_id = 1
        # The server's Receive Maximum caps QoS 1 publishes in flight; exceeding it is an error.
        self._in_flight = asyncio.Semaphore(connack.properties.get(RECEIVE_MAXIMUM, 65_535))
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        username: str,
        client_id: str = "",
        level: int = V5,
        keepalive: int = 60,
        timeout_s: float = 10.0,
    ) -> MqttClient:
        """Open a connection and wait for its CONNACK.

        Raises `MqttError` when the CONNACK refuses (or the server breaks the protocol),
        `ConnectionError` when the server closes first, `TimeoutError` after ``timeout_s``.
        """
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                parser = PacketReader(max_packet_bytes=MAX_INCOMING_BYTES)
                parser.protocol_level = level
                writer.write(
                    encode_connect(
                        client_id=client_id, username=username, keepalive=keepalive, level=level
                    )
                )
                packets = await _first_packets(reader, parser)
            except BaseException:
                writer.close()
                raise
        connack = packets[0]
        if not isinstance(connack, ConnAck) or connack.reason_code != 0:
            writer.close()
            if isinstance(connack, ConnAck):
                raise MqttError(connack.reason_code)
            raise MqttError(_PROTOCOL_ERROR, f"expected CONNACK, got {type(connack).__name__}")
        client = cls(reader, writer, parser, connack)
        for packet in packets[1:]:  # whatever the server sent right behind the CONNACK
            if not client._dispatch(packet):
                client._shut()
                raise ConnectionError("the server closed the connection after CONNACK")
        client._task = asyncio.create_task(client._read_loop())
        return client

    async def wait_closed(self, *, timeout_s: float) -> None:
        """Return once the connection has ended (or ``timeout_s`` passed, still open)."""
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=timeout_s)

    @property
    def messages(self) -> asyncio.Queue[Publish]:
        """PUBLISH packets from the server, QoS 1 ones already acknowledged."""
        if self._messages is None:
            self._messages = asyncio.Queue()
        return self._messages

    async def publish(self, topic: str, payload: bytes, *, qos: int = 1) -> int:
        """Publish; many may be in flight at once.

        QoS 1 waits for the PUBACK and returns its reason code (0 accepted; from 0x80 refused),
        QoS 0 returns 0 once written. Raises `ConnectionError` if the connection closes first.
        """
        if qos == 0:
            self._check_open()
            self._writer.write(encode_publish(topic, payload, level=self.level))
            await self._writer.drain()
            return 0
        if qos != 1:
            raise ValueError(f"QoS {qos} is not supported")
        async with self._in_flight:
            ack = await self._request(
                lambda packet_id: encode_publish(
                    topic, payload, level=self.level, qos=1, packet_id=packet_id
                )
            )
        if not isinstance(ack, PubAck):
            raise MqttError(_PROTOCOL_ERROR, f"PUBLISH answered by {type(ack).__name__}")
        return ack.reason_code

    async def subscribe(self, filters: list[tuple[str, int]]) -> list[int]:
        """Subscribe to ``(topic filter, maximum QoS)`` pairs; returns the SUBACK reason codes."""
        ack = await self._request(
            lambda packet_id: encode_subscribe(packet_id, filters, level=self.level)
        )
        if not isinstance(ack, SubAck):
            raise MqttError(_PROTOCOL_ERROR, f"SUBSCRIBE answered by {type(ack).__name__}")
        return ack.reason_codes

    async def ping(self) -> None:
        """Send PINGREQ and wait for PINGRESP. The client never pings by itself."""
        self._check_open()
        waiter = asyncio.get_running_loop().create_future()
        self._pings.append(waiter)
        try:
            self._writer.write(encode_pingreq())
            await self._writer.drain()
            answered = await waiter
        finally:
            if waiter in self._pings:  # cancelled or failed to write: forget it
                self._pings.remove(waiter)
        if not answered:
            raise ConnectionError("the connection closed before PINGRESP")

    async def close(self) -> None:
        """Send DISCONNECT (normal disconnection) and close the socket."""
        if not self.closed:
            with contextlib.suppress(OSError):
                self._writer.write(encode_disconnect(level=self.level))
            self._shut()
        if self._task is not None:
            # Closing the transport ends the reader task; a peer that reads nothing could keep
            # the flush (and so the task) waiting, hence the abort.
            try:
                async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                    await self._task
            except TimeoutError:
                self._writer.transport.abort()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    # Internals

    def _check_open(self) -> None:
        if self.closed:
            raise ConnectionError("the MQTT connection is closed")

    def _allocate_id(self) -> int:
        for _ in range(65_535):
            packet_id = self._next_id
            self._next_id = packet_id % 65_535 + 1
            if packet_id not in self._waiting:
                return packet_id
        raise MqttError(0x93, "all 65535 packet identifiers are in use")

    async def _request(self, encode: Callable[[int], bytes]) -> Packet:
        """Write a packet that carries a packet id and wait for the ack with that id."""
        self._check_open()
        packet_id = self._allocate_id()
        waiter: asyncio.Future[Packet | None] = asyncio.get_running_loop().create_future()
        self._waiting[packet_id] = waiter
        try:
            self._writer.write(encode(packet_id))
            await self._writer.drain()
            ack = await waiter
        finally:
            del self._waiting[packet_id]
        if ack is None:
            raise ConnectionError("the connection closed before the acknowledgement")
        return ack

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self._reader.read(_READ_SIZE)
                if not data:
                    return
                for packet in self._parser.feed(data):
                    if not self._dispatch(packet):
                        return
        except (OSError, MalformedPacket):
            return  # a reset or a broken server: both just end the connection
        finally:
            self._shut()

    def _dispatch(self, packet: Packet) -> bool:
        """Handle one packet from the server; False when the connection must end."""
        if isinstance(packet, PubAck | SubAck | UnsubAck):
            waiter = self._waiting.get(packet.packet_id)
            if waiter is not None and not waiter.done():
                waiter.set_result(packet)
        elif isinstance(packet, Publish):
            if packet.packet_id is not None:
                self._writer.write(encode_puback(packet.packet_id, level=self.level))
            self.messages.put_nowait(packet)
        elif isinstance(packet, PingResp):
            if self._pings:  # PINGRESPs come in the order of the PINGREQs
                ping = self._pings.pop(0)
                if not ping.done():  # a cancelled ping() may not have removed itself yet
                    ping.set_result(True)
        elif isinstance(packet, Disconnect):
            self.disconnect_reason = packet.reason_code
            return False
        else:
            return False  # CONNACK again, AUTH, or a packet only clients send
        return True

    def _shut(self) -> None:
        """Mark closed, release every waiter, close the socket; safe to call again."""
        self.closed = True
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_result(None)
        for ping in self._pings:
            if not ping.done():
                ping.set_result(False)
        self._pings.clear()
        self._writer.close()


async def _first_packets(reader: asyncio.StreamReader, parser: PacketReader) -> list[Packet]:
    """Read until at least one packet (the CONNACK, normally) is complete."""
    while True:
        data = await reader.read(_READ_SIZE)
        if not data:
            raise ConnectionError("the server closed the connection before CONNACK")
        try:
            packets = parser.feed(data)
        except MalformedPacket as exc:
            raise MqttError(exc.reason_code, f"bad answer to CONNECT: {exc}") from None
        if packets:
            return packets
