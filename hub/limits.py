"""Refuse, before any handler runs, what no endpoint can take: oversized bodies, JSON nested
deeper than any of the hub's documents, NUL bytes."""

from __future__ import annotations

import json
import re
from array import array
from itertools import accumulate

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


async def _answer(send: Send, status: int, detail: str) -> None:
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json")],
    }
    await send(start)
    await send({"type": "http.response.body", "body": orjson.dumps({"detail": detail})})


class BodySizeLimit:
    """413 for a body over ``max_bytes``, whether declared by Content-Length or streamed."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    @property
    def reason(self) -> str:
        return f"request body exceeds {self.max_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _answer(send, 413, self.reason)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # FastAPI re-raises Starlette's HTTPException from body parsing as it is.
                    raise HTTPException(413, detail=self.reason)
            return message

        await self.app(scope, limited_receive, send)


class RefuseNulInUrl:
    """400 for a NUL byte (``%00``) in the path or the query: no identifier or filter of the hub
    may hold one, and PostgreSQL cannot even compare against it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and ("\x00" in scope["path"] or b"%00" in scope["query_string"]):
            await _answer(send, 400, "the URL must not contain a NUL byte (%00)")
            return
        await self.app(scope, receive, send)


# A JSON string, escapes included; an unterminated one runs to the end. Possessive, so each
# string is matched once, in linear time, whatever the body holds.
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.?)*+(?:"|\Z)', re.DOTALL)
_OPENING_CLOSING = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 and -1 as signed bytes
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


def json_depth(body: bytes) -> int:
    """How deeply a JSON text nests arrays and objects; brackets inside strings do not count.

    Linear in the body's length and all in C (no parsing, no recursion), so it is safe on any
    input: for invalid JSON the answer is only an estimate, and such a body is refused anyway.

    >>> json_depth(b'{"a": [1, {"b": "[[[["}]}')
    3
    """
    encoding = json.detect_encoding(body)  # the standard library reads UTF-16 and -32 too
    if encoding not in ("utf-8", "utf-8-sig"):
        body = body.decode(encoding, "replace").encode()
    if b"\\" in body:
        outside = _JSON_STRING.sub(b"", body)
    else:  # no escapes: quotes pair up, and splitting on them is faster than the expression
        outside = b"".join(body.split(b'"')[::2])
    steps = array("b", outside.translate(_OPENING_CLOSING, _NOT_BRACKETS))
    return max(accumulate(steps), default=0)


def _reads_as_json(scope: Scope) -> bool:
    """JSON by its content type, or by no content type (ThingsBoard devices often send none)."""
    content_type: bytes | None = dict(scope["headers"]).get(b"content-type")
    if content_type is None:
        return True
    media_type = content_type.split(b";", 1)[0].strip().lower()
    return media_type == b"application/json" or media_type.endswith(b"+json")


class RefuseDeepJson:
    """400 for a JSON body nested deeper than ``max_depth`` (arrays and objects).

    Parsers recurse per level: the standard library's, which FastAPI uses, gives up near 1,000
    levels, orjson near 1,024 and writes at most 254, and a handler that walks or re-serialises
    a body may fail earlier. The hub's own documents nest at most a handful of levels, so deeper
    ones are refused here, with the reason, before any of them runs. Sits inside
    `BodySizeLimit`: the body it reads is already bounded.
    """

    def __init__(self, app: ASGIApp, *, max_depth: int) -> None:
        self.app = app
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS")
                or not _reads_as_json(scope)):  # fmt: skip
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more_body = True
        try:
            while more_body:
                message = await receive()
                if message["type"] != "http.request":  # the client went away
                    return
                chunks.append(message.get("body", b""))
                more_body = message.get("more_body", False)
        except HTTPException as exc:  # BodySizeLimit's 413 for a streamed body
            await _answer(send, exc.status_code, exc.detail)
            return
        body = b"".join(chunks)
        # More brackets than the limit are needed to nest beyond it: most bodies stop here.
        if body.count(b"[") + body.count(b"{") > self.max_depth:
            depth = json_depth(body)
            if depth > self.max_depth:
                reason = f"JSON nested {depth} levels deep; at most {self.max_depth} are accepted"
                await _answer(send, 400, reason)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # http.disconnect, when the client goes
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)
