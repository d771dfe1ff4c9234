"""Sinks retry until they succeed: an agent never acknowledges a batch it has not written."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def retry_until_done(
    write: Callable[[], Awaitable[None]], *, what: str, max_delay_s: float = 10.0
) -> None:
    delay = 0.5
    while True:
        try:
            await write()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database is away or not set up: wait, never drop
            log.warning("writing %s failed (%r); retrying in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay_s)
