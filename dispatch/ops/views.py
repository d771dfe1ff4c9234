"""``/ws/ops``: the operations centre's live feed over a websocket (JSON in binary frames).

Client → server
    ``{"type": "hello", "key": "<ops API key>", "subscribe": {filters},
    "resume": {"stream": "…", "seq": N}}`` first, within ``HELLO_TIMEOUT_S`` (the key may
    come as an ``X-API-Key`` header instead: browsers cannot set one). Filters: ``layers``
    (events, incidents, tickets, alarms, device-health, h3, sla), ``districts``,
    ``categories``, ``priorities``; absent or empty means all.
    ``{"type": "subscribe", filters}`` changes them (a new snapshot follows);
    ``{"type": "ping"}`` is answered ``{"type": "pong"}``.
Server → client (every message one JSON object in UTF-8, sent as a *binary* frame: a frame
    is encoded once for all clients, and a text frame would be transcoded again per client)
    ``welcome`` (stream id, seq), then ``snapshot`` (every current item the filters pass) or,
    when resuming the same stream from a seq still in the feed's ring, only a ``delta``;
    then ``delta`` frames (``from`` → ``seq``; each changed key once, at its latest value;
    ``value: null`` means gone) at most 10 a second, and ``heartbeat`` when idle.
    Refusals close with 4400 (bad hello), 4401 (unknown key), 4403 (not the operations centre),
    4429 (too many failed keys from this address: hub/guessing.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from dispatch.ops.feed import FRAME_INTERVAL_S, Feed, Filters
from dispatch.ops.state import LAYERS
from hub.deps import resolve_key
from hub.guessing import TooManyFailures

router = APIRouter()
log = logging.getLogger(__name__)
HELLO_TIMEOUT_S = 10.0
HEARTBEAT_S = 15.0
SEND_TIMEOUT_S = 30.0  # a client that takes longer to take a frame is dropped (it may resume)
MAX_FILTER_VALUES = 100


class Refused(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def parse_filters(raw: Any) -> Filters:
    if raw is None:
        return Filters()
    if not isinstance(raw, dict):
        raise Refused(4400, "subscribe must be an object")
    fields: dict[str, frozenset[str]] = {}
    for name in ("layers", "districts", "categories", "priorities"):
        values = raw.get(name) or []
        if (
            not isinstance(values, list)
            or len(values) > MAX_FILTER_VALUES
            or not all(isinstance(v, str) and len(v) <= 64 for v in values)
        ):
            raise Refused(4400, f"{name} must be a list of at most {MAX_FILTER_VALUES} strings")
        fields[name] = frozenset(values)
    unknown = fields["layers"] - set(LAYERS)
    if unknown:
        raise Refused(4400, f"unknown layers {sorted(unknown)}; known: {list(LAYERS)}")
    return Filters(layers=fields["layers"] or frozenset(LAYERS), districts=fields["districts"],
                   categories=fields["categories"], priorities=fields["priorities"])  # fmt: skip


async def _hello(websocket: WebSocket) -> dict[str, Any]:
    try:
        text = await asyncio.wait_for(websocket.receive_text(), HELLO_TIMEOUT_S)
        hello = orjson.loads(text)
    except TimeoutError:
        raise Refused(4400, "no hello within 10 s") from None
    except orjson.JSONDecodeError:
        raise Refused(4400, "the hello is not JSON") from None
    if not isinstance(hello, dict) or hello.get("type") != "hello":
        raise Refused(4400, 'the first message must be {"type": "hello", …}')
    return hello


async def _authorise(websocket: WebSocket, hello: dict[str, Any]) -> None:
    key = websocket.headers.get("x-api-key") or hello.get("key")
    if not isinstance(key, str) or not key:
        raise Refused(4401, "an API key is required")
    try:
        principal = await resolve_key(websocket, key)
    except TooManyFailures as exc:
        raise Refused(4429, str(exc)) from None
    if principal is None:
        raise Refused(4401, "unknown or revoked API key")
    if principal.role != "ops":
        raise Refused(4403, f"{principal.name} is not the operations centre")


def _resume_cursor(feed: Feed, resume: Any) -> int | None:
    """The seq to continue from, or None when a snapshot is needed."""
    if not isinstance(resume, dict) or resume.get("stream") != feed.stream:
        return None
    seq = resume.get("seq")
    if not isinstance(seq, int) or not 0 <= seq <= feed.seq or seq < feed.oldest - 1:
        return None
    return seq


@router.websocket("/ws/ops")
async def ops_feed(websocket: WebSocket) -> None:
    await websocket.accept()
    feed: Feed = websocket.app.state.ops_feed
    try:
        hello = await _hello(websocket)
        await _authorise(websocket, hello)
        filters = parse_filters(hello.get("subscribe"))
    except Refused as refused:
        await _refuse(websocket, refused)
        return
    except WebSocketDisconnect:
        return
    await feed.ready.wait()
    session = Session(websocket, feed, filters, _resume_cursor(feed, hello.get("resume")))
    await session.run()


async def _refuse(websocket: WebSocket, refused: Refused) -> None:
    with contextlib.suppress(Exception):
        await websocket.send_bytes(orjson.dumps({"type": "error", "reason": str(refused)}))
        await websocket.close(code=refused.code, reason=str(refused)[:120])


class Session:
    """One client: a sender (snapshot, then deltas from its cursor) and a reader (filters,
    pings); when either ends, both do, and nothing of the client stays in the feed."""

    def __init__(self, websocket: WebSocket, feed: Feed, filters: Filters, cursor: int | None
                 ) -> None:  # fmt: skip
        self.websocket = websocket
        self.feed = feed
        self.filters = filters
        self.cursor = cursor  # None: send a snapshot next
        self.refilter = asyncio.Event()
        self._sending_lock = asyncio.Lock()  # the reader's pongs and the sender's frames

    async def run(self) -> None:
        await self._send(orjson.dumps({"type": "welcome", "stream": self.feed.stream,
                                       "seq": self.feed.seq}))  # fmt: skip
        sender = asyncio.create_task(self._sending())
        reader = asyncio.create_task(self._reading())
        try:
            await asyncio.wait({sender, reader}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sender, reader):
                task.cancel()
            await asyncio.gather(sender, reader, return_exceptions=True)
            with contextlib.suppress(Exception):  # already closed by the client, mostly
                await self.websocket.close()

    async def _sending(self) -> None:
        while True:
            if self.cursor is None:
                self.cursor = self.feed.seq
                await self._send(self.feed.snapshot_frame(self.filters))
            await self._wait_for_news()
            await asyncio.sleep(FRAME_INTERVAL_S)  # changes in this window go in one frame
            if self.cursor is None:
                continue
            delta = self.feed.delta_frame(self.cursor, self.filters)
            if delta is None:
                self.cursor = None  # fell out of the ring: start again from a snapshot
                continue
            self.cursor = self.feed.seq
            if delta:
                await self._send(delta)

    async def _wait_for_news(self) -> None:
        assert self.cursor is not None
        news = asyncio.create_task(self.feed.wait_beyond(self.cursor))
        refilter = asyncio.create_task(self.refilter.wait())
        try:
            done, _ = await asyncio.wait({news, refilter}, timeout=HEARTBEAT_S,
                                         return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        finally:
            news.cancel()
            refilter.cancel()
        if self.refilter.is_set():
            self.refilter.clear()
            self.cursor = None
        elif not done:
            await self._send(orjson.dumps({"type": "heartbeat", "seq": self.feed.seq}))

    async def _reading(self) -> None:
        while True:
            try:
                message = orjson.loads(await self.websocket.receive_text())
            except orjson.JSONDecodeError:
                await _refuse(self.websocket, Refused(4400, "messages must be JSON"))
                return
            except WebSocketDisconnect:
                return
            kind = message.get("type") if isinstance(message, dict) else None
            if kind == "ping":
                await self._send(b'{"type":"pong"}')
            elif kind == "subscribe":
                try:
                    self.filters = parse_filters(message)
                except Refused as refused:
                    await _refuse(self.websocket, refused)
                    return
                self.refilter.set()
            else:
                await _refuse(self.websocket, Refused(4400, f"unknown message type {kind!r}"))
                return

    async def _send(self, data: bytes) -> None:
        async with self._sending_lock:
            await asyncio.wait_for(self.websocket.send_bytes(data), SEND_TIMEOUT_S)
