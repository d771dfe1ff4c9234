"""Records an agent cannot process go to the dead-letter topic with the reason attached."""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
import orjson
from pydantic import BaseModel, ValidationError

from schemas.codec import loads
from streams.app import dead_letter

M = TypeVar("M", bound=BaseModel)
# Refusals about the data itself: retrying the same record can never succeed.
REFUSED_RECORD = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)

log = logging.getLogger(__name__)


def describe(exc: Exception) -> str:
    """A one-line reason naming the failing fields, for the dead-letter record."""
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<record>'}: {err['msg']}"
            for err in exc.errors()
        )
    return f"{type(exc).__name__}: {exc}"


def source_of(value: bytes) -> str | None:
    """The source named in an intake envelope or event, if the bytes are one."""
    try:
        source = orjson.loads(value).get("source")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return source if isinstance(source, str) else None


def dead_letter_record(*, message: Any, stage: str, reason: str) -> bytes:
    """The dead-letter value: where the record came from, why it failed, and the record itself
    (base64, byte for byte, so a replay sends exactly what failed)."""
    value: bytes = message.value if isinstance(message.value, bytes) else b""
    key: bytes = message.key if isinstance(message.key, bytes) else b""
    return orjson.dumps(
        {
            "reason": reason,
            "stage": stage,
            "source": source_of(value),
            "topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "failed_at": datetime.now(UTC),
            "key_b64": base64.b64encode(key).decode(),
            "value_b64": base64.b64encode(value).decode(),
            "value": value.decode("utf-8", errors="replace"),
        }
    )


async def send_to_dead_letter(message: Any, *, stage: str, reason: str) -> None:
    log.warning("dead-lettered %s[%s]@%s: %s", message.topic, message.partition,
                message.offset, reason)  # fmt: skip
    await dead_letter.send(
        key=message.key or b"",
        value=dead_letter_record(message=message, stage=stage, reason=reason),
        headers=[("reason", reason[:1000].encode()), ("stage", stage.encode())],
    )


async def decode_or_dead_letter(
    records: list[Any], model: type[M], *, stage: str
) -> list[tuple[Any, M]]:
    """Each record with its decoded value; the ones that do not decode go to the dead-letter
    topic with the reason (flush the producer before committing the batch)."""
    decoded = []
    for record in records:
        try:
            decoded.append((record, loads(model, record.value)))
        except ValueError as exc:  # JSON and validation errors are ValueErrors
            await send_to_dead_letter(record, stage=stage, reason=describe(exc))
    return decoded


async def store_or_isolate(
    store: Callable[[list[M]], Awaitable[None]], decoded: list[tuple[Any, M]], *, stage: str
) -> None:
    """``store`` the batch; if the database refuses it for its content, each record alone, in
    order, and the refused ones to the dead-letter topic: one bad record never holds up the
    good ones beside it (stores are idempotent, so repeating the good is safe). Other errors
    (the database away) propagate, for the caller to retry."""
    try:
        await store([value for _, value in decoded])
        return
    except REFUSED_RECORD as exc:
        log.warning("%s: batch of %d refused (%r): storing one by one", stage, len(decoded), exc)
    for record, value in decoded:
        try:
            await store([value])
        except REFUSED_RECORD as exc:
            reason = f"the database refused it: {type(exc).__name__}: {exc}"
            await send_to_dead_letter(record, stage=stage, reason=reason)
